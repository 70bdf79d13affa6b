"""Reconstruction losses and the four inter-pathway consistency terms of GLSGN.

The paper names the four aspects (low-level content, perceptual attention, restoring
intensity, high-level semantics) but not their formulas; these are this project's
(docs/method.md, "Losses"). Every term compares maps of the training crop on a common grid,
through `resample`, so they see exactly the pixels the pathways saw. Each is zero when the
pathways agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .config import LossConfig
from .model import GLSGN, FullResNet, GLSGNOutput
from .model.resample import Region, downscale, resample

__all__ = ["BackboneError", "SemanticBackbone", "GLSGNLoss", "TrainBatch", "TERMS"]

TERMS = ("reconstruction", "pathway", "content", "attention", "intensity", "semantic")


class BackboneError(RuntimeError):
    """The semantic backbone's weights cannot be loaded; the message says how to provide them."""


@dataclass
class TrainBatch:
    """A training batch in GLSGN's training form (see glsgn.data.datasets.TrainCrops)."""

    x: Tensor  # input crop (N, 3, c, c)
    y: Tensor  # target crop
    x_global: Tensor  # whole input scaled down by global_scale
    y_global: Tensor  # whole target scaled down
    region: Region  # where the crop lies in the (padded) full-resolution image


def _l1(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).abs().mean()


def _to(t: Tensor, src: Region, dst: Region) -> Tensor:
    """Bring `t` onto `dst`'s grid: an area mean when `dst` is an integer factor coarser."""
    f = src.size[0] // dst.size[0] if dst.size[0] else 0
    if f > 1 and src.size[0] == dst.size[0] * f and src.size[1] == dst.size[1] * f:
        t = downscale(t, f)
        src = src.coarser(f)
    return resample(t, src, dst)


def _agree(a: Tensor, ra: Region, b: Tensor, rb: Region) -> Tensor:
    """L1 between two maps of the same area, on the coarser of their two grids."""
    if ra.size[0] >= rb.size[0]:
        return _l1(_to(a, ra, rb), b)
    return _l1(a, _to(b, rb, ra))


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class SemanticBackbone(nn.Module):
    """A frozen timm feature extractor for the high-level semantic consistency term.

    Weights: a local file (`loss.backbone_weights: path`), timm's own loading from its cache or
    the hub (`"hub"`), or, only where `loss.allow_random_backbone` says so, a seeded random
    initialisation; `kind` (hub, file, random) and `source` say which, and every checkpoint
    and metrics file records it.
    """

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        import timm

        kw = dict(features_only=True, out_indices=tuple(cfg.backbone_layers))
        w = cfg.backbone_weights
        try:
            if w == "hub":
                self.net = timm.create_model(cfg.backbone, pretrained=True, **kw)
                self.source = f"timm pretrained {cfg.backbone} (hub cache)"
                self.kind = "hub"
            elif w:
                if not Path(w).is_file():
                    raise BackboneError(f"loss.backbone_weights: no such file {w!r}")
                overlay = dict(file=str(w))
                self.net = timm.create_model(
                    cfg.backbone, pretrained=True, pretrained_cfg_overlay=overlay, **kw
                )
                self.source = f"{cfg.backbone} weights from {w}"
                self.kind = "file"
            elif cfg.allow_random_backbone:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    self.net = timm.create_model(cfg.backbone, pretrained=False, **kw)
                self.kind = "random"
                self.source = (
                    f"random {cfg.backbone} (no pretrained weights: loss.backbone_weights is "
                    "null and loss.allow_random_backbone is true)"
                )
            else:
                raise BackboneError(
                    "loss.backbone_weights is null and loss.allow_random_backbone is false: set "
                    f"loss.backbone_weights to a local {cfg.backbone} weights file, or to 'hub' "
                    "to use timm's cache or download"
                )
        except BackboneError:
            raise
        except Exception as e:
            raise BackboneError(
                f"loss.backbone_weights={w!r}: timm could not load {cfg.backbone} "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200]}). Give a local weights "
                "file, or set loss.allow_random_backbone: true to train with a random backbone"
            ) from None
        self.net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), False)

    def train(self, mode: bool = True) -> SemanticBackbone:
        return super().train(False)  # frozen: batch-norm statistics never change

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.net((x - self.mean) / self.std)


class GLSGNLoss(nn.Module):
    """Weighted sum of the terms in `TERMS`; `forward` returns each (unweighted) and `total`.

    A term whose weight is 0 is not computed, so it contributes no gradient at all.
    """

    def __init__(self, cfg: LossConfig, model: GLSGN | FullResNet) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = [model]  # not a submodule: its parameters belong to the optimiser
        self.weights = {t: float(getattr(cfg, t)) for t in TERMS}
        self.backbone = SemanticBackbone(cfg) if self.weights["semantic"] > 0 else None

    def forward(self, out: GLSGNOutput, batch: TrainBatch) -> dict[str, Tensor]:
        terms: dict[str, Tensor] = {}
        for name, fn in (
            ("reconstruction", self.reconstruction),
            ("pathway", self.pathway),
            ("content", self.content),
            ("attention", self.attention),
            ("intensity", self.intensity),
            ("semantic", self.semantic),
        ):
            if self.weights[name] > 0:
                v = fn(out, batch)
                if v is not None:
                    terms[name] = v
        terms["total"] = sum(self.weights[k] * v for k, v in terms.items())
        return terms

    # --- where each output lies ------------------------------------------------------------

    def _outputs(self, out: GLSGNOutput, batch: TrainBatch) -> list[tuple[Tensor, Region]]:
        """B_1..B_n on their grids, then B_g's part over the crop: finest to coarsest."""
        m = self.model[0]
        r = batch.region
        outs = []
        if isinstance(m, GLSGN):
            outs = [(b, r.coarser(f)) for b, f in zip(out.b_local, m.factors, strict=True)]
            if out.b_global is not None:
                g_whole = m.global_region(r)
                r_g = r.coarser(m.global_factor)
                outs.append((resample(out.b_global, g_whole, r_g), r_g))
        return outs

    # --- the terms ---------------------------------------------------------------------------

    def reconstruction(self, out: GLSGNOutput, batch: TrainBatch) -> Tensor:
        """L1 of B_out against the target crop."""
        return _l1(out.b_out, batch.y)

    def pathway(self, out: GLSGNOutput, batch: TrainBatch) -> Tensor | None:
        """L1 of every pathway's own output against the target at that pathway's scale."""
        m = self.model[0]
        if not isinstance(m, GLSGN):
            return None
        losses = [
            _l1(b, downscale(batch.y, f)) for b, f in zip(out.b_local, m.factors, strict=True)
        ]
        if out.b_global is not None:
            losses.append(_l1(out.b_global, batch.y_global))
        return torch.stack(losses).mean()

    def content(self, out: GLSGNOutput, batch: TrainBatch) -> Tensor | None:
        """Low-level content: adjacent pathways' outputs (B_1, B_2, B_3, B_g) agree once
        brought to the coarser one's grid."""
        outs = self._outputs(out, batch)
        if len(outs) < 2:
            return None
        return torch.stack(
            [_agree(a, ra, b, rb) for (a, ra), (b, rb) in zip(outs, outs[1:], strict=False)]
        ).mean()

    def attention(self, out: GLSGNOutput, batch: TrainBatch) -> Tensor | None:
        """Perceptual attention: each A_i agrees with A_g and with A_{i-1} over the crop."""
        m = self.model[0]
        if not isinstance(m, GLSGN) or not out.a_local or out.a_local[0] is None:
            return None
        r = batch.region
        maps = [(a, r.coarser(f * m.bottleneck_factor)) for a, f in zip(out.a_local, m.factors,
                                                                         strict=True)]  # fmt: skip
        losses = [_agree(a, ra, b, rb) for (a, ra), (b, rb) in zip(maps, maps[1:], strict=False)]
        if out.a_global is not None:
            r_g = r.coarser(m.global_factor)
            a_g = resample(out.a_global, m.global_region(r), r_g)
            losses += [_agree(a, ra, a_g, r_g) for a, ra in maps]
        return torch.stack(losses).mean() if losses else None

    def intensity(self, out: GLSGNOutput, batch: TrainBatch) -> Tensor | None:
        """Restoring intensity: the removed layer |x_i - B_i|, low-passed to the global view's
        grid, has the same strength in every pathway."""
        m = self.model[0]
        if not isinstance(m, GLSGN) or not m.factors:
            return None
        r = batch.region
        coarse = r.coarser(m.global_factor)
        layers = []
        for b, f in zip(out.b_local, m.factors, strict=True):
            removed = (downscale(batch.x, f) - b).abs().mean(1, keepdim=True)
            layers.append(_to(removed, r.coarser(f), coarse))
        if out.b_global is not None:
            removed = (batch.x_global - out.b_global).abs().mean(1, keepdim=True)
            layers.append(resample(removed, m.global_region(r), coarse))
        if len(layers) < 2:
            return None
        ref = layers[-1]  # the global pathway's, or the coarsest local one's
        return torch.stack([_l1(lay, ref) for lay in layers[:-1]]).mean()

    def semantic(self, out: GLSGNOutput, batch: TrainBatch) -> Tensor:
        """High-level semantics: frozen-backbone features of every output agree with the
        target's, and adjacent pathways' agree with each other (at half the crop's scale)."""
        r = batch.region
        common = r.coarser(2) if all(v % 2 == 0 for v in (*r.size, *r.box)) else r
        images = [_to(out.b_out, r, common)] + [_to(b, rb, common) for b, rb in
                                                 self._outputs(out, batch)]  # fmt: skip
        n = len(images) + 1  # the outputs, then the target: one backbone pass for all
        layers = self.backbone(torch.cat(images + [_to(batch.y, r, common)]))
        per_image = [[f.chunk(n)[i] for f in layers] for i in range(n)]
        target = per_image[-1]

        def dist(a: list[Tensor], b: list[Tensor]) -> Tensor:
            return torch.stack([_l1(x, y) for x, y in zip(a, b, strict=True)]).mean()

        losses = [dist(p, target) for p in per_image[:-1]]
        losses += [dist(a, b) for a, b in zip(per_image[1:-1], per_image[2:-1], strict=False)]
        return torch.stack(losses).mean()
