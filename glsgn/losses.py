"""Reconstruction losses and the four inter-pathway consistency terms of GLSGN.

The paper names the four aspects (low-level content, perceptual attention, restoring
intensity, high-level semantics) but not their formulas; these are this project's
(docs/method.md, "Losses"). Every term compares maps of the training crop, brought to a
common grid by `to_grid` (the block mean when the grid is an integer factor coarser, as the
pathway inputs are made), so each term is exactly 0 when every output is the target at its
own scale, and positive when the pathways disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .config import ConfigError, LossConfig
from .model import GLSGNOutput
from .model.pyramid import high_band
from .model.resample import Region, downscale, to_grid

__all__ = [
    "BackboneError",
    "SemanticBackbone",
    "GLSGNLoss",
    "TrainBatch",
    "CONSISTENCY",
    "RECONSTRUCTION",
    "TERMS",
    "consistency_term",
]

# The reconstruction losses: fixed keys of params.yaml's `loss`, never ablated.
RECONSTRUCTION = ("reconstruction", "pathway_global", "pathway_local")


@dataclass(frozen=True)
class ConsistencyTerm:
    """An inter-pathway consistency term: `fn(loss, out, batch)` is its unweighted value, or
    None where it does not apply to the model (attention without PAC)."""

    name: str
    fn: Callable[[GLSGNLoss, GLSGNOutput, TrainBatch], Tensor | None]
    weight: float  # default of loss.consistency.NAME
    what: str  # what switching it off removes, for tables and logs


# Every consistency term, by name, in the order they are summed and tabled. A term registered
# here gets a weight in `loss.consistency` and a `no_NAME` ablation (glsgn/variants.py);
# params.yaml's loss.consistency is what the pipeline's train-term stages iterate.
CONSISTENCY: dict[str, ConsistencyTerm] = {}


def consistency_term(name: str, weight: float, what: str):
    """Register the decorated `fn(loss, out, batch) -> Tensor | None` as consistency term
    `name` (its default weight, and one line saying what it asks)."""

    def register(fn):
        CONSISTENCY[name] = ConsistencyTerm(name, fn, weight, what)
        return fn

    return register


def terms() -> tuple[str, ...]:
    """Every term's name: the reconstruction losses, then the consistency terms."""
    return (*RECONSTRUCTION, *CONSISTENCY)


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


def _coarsest(*regions: Region) -> Region:
    return min(regions, key=lambda r: r.size[0])


def _agree(a: Tensor, ra: Region, b: Tensor, rb: Region) -> Tensor:
    """L1 between two maps of the same area, on the coarser of their two grids."""
    common = _coarsest(ra, rb)
    return _l1(to_grid(a, ra, common), to_grid(b, rb, common))


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
    """Weighted sum of the reconstruction losses and the consistency terms; `forward` returns
    each (unweighted) and `total`.

    A term whose weight is 0 is not computed, so it contributes no gradient at all; a term
    that does not apply to the model (attention without PAC) is left out.
    """

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        unknown = [t for t in cfg.consistency if t not in CONSISTENCY]
        if unknown:
            raise ConfigError(
                f"loss.consistency.{unknown[0]}: no such consistency term (terms of "
                f"glsgn/losses.py: {', '.join(CONSISTENCY)}) (got {unknown[0]!r})"
            )
        self.cfg = cfg
        self.weights = {t: float(getattr(cfg, t)) for t in RECONSTRUCTION}
        self.weights |= {t: float(cfg.consistency.get(t, 0.0)) for t in CONSISTENCY}
        self.backbone = SemanticBackbone(cfg) if self.weights.get("semantic", 0) > 0 else None

    def forward(self, out: GLSGNOutput, batch: TrainBatch) -> dict[str, Tensor]:
        terms: dict[str, Tensor] = {}
        for name, weight in self.weights.items():
            if weight > 0:
                fn = CONSISTENCY[name].fn if name in CONSISTENCY else getattr(type(self), name)
                v = fn(self, out, batch)
                if v is not None:
                    terms[name] = v
        terms["total"] = sum(self.weights[k] * v for k, v in terms.items())
        return terms

    # --- where each output lies ------------------------------------------------------------

    def outputs(self, out: GLSGNOutput, batch: TrainBatch) -> list[tuple[Tensor, Region]]:
        """B_1..B_n on their grids, then B_g's part over the crop: finest to coarsest."""
        geo, r = out.geometry, batch.region
        outs = [(b, geo.local(r, k)) for k, b in enumerate(out.b_local)]
        if out.b_global is not None:
            outs.append(geo.global_part(out.b_global, r))
        return outs

    # --- reconstruction ----------------------------------------------------------------------

    def reconstruction(self, out: GLSGNOutput, batch: TrainBatch) -> Tensor:
        """L1 of B_out against the target crop."""
        return _l1(out.b_out, batch.y)

    def pathway_global(self, out: GLSGNOutput, batch: TrainBatch) -> Tensor | None:
        """L1 of B_g against the whole target at the global scale."""
        return _l1(out.b_global, batch.y_global) if out.b_global is not None else None

    def pathway_local(self, out: GLSGNOutput, batch: TrainBatch) -> Tensor | None:
        """L1 of what each local pathway gives the pyramid (LP.png), at its scale: B_1..B_{n-1}
        their high-frequency bands h_k, B_n its whole output (the base l and its own band).

        The low frequencies of B_1..B_{n-1} reach no output, so no reconstruction loss sees
        them; the content and intensity terms do. (An L1 on the whole B_k would bound both
        terms, and their ablations could show nothing.)"""
        if not out.b_local:
            return None
        geo, n = out.geometry, len(out.b_local)
        losses = []
        for k, (b, rk) in enumerate(self.outputs(out, batch)[:n]):
            y = downscale(batch.y, geo.factors[k])
            if k + 1 < n:
                b, y = high_band(b, rk, geo.ratio(k)), high_band(y, rk, geo.ratio(k))
            losses.append(_l1(b, y))
        return torch.stack(losses).mean()


# --- the four consistency terms of the paper --------------------------------------------------


@consistency_term("content", 0.1, "low-level content term off")
def content(loss: GLSGNLoss, out: GLSGNOutput, batch: TrainBatch) -> Tensor | None:
    """Low-level content: adjacent pathways' outputs (B_1, B_2, B_3, B_g) agree once
    brought to the coarser one's grid."""
    outs = loss.outputs(out, batch)
    if len(outs) < 2:
        return None
    return torch.stack(
        [_agree(a, ra, b, rb) for (a, ra), (b, rb) in zip(outs, outs[1:], strict=False)]
    ).mean()


@consistency_term("attention", 0.05, "perceptual attention term off")
def attention(loss: GLSGNLoss, out: GLSGNOutput, batch: TrainBatch) -> Tensor | None:
    """Perceptual attention: each local pathway's own A_i (from its own features, not a
    copy of a cue) agrees with A_{i-1} and with A_g over the crop, on the coarser grid."""
    if not out.a_local or out.a_local[0] is None:
        return None
    geo, r = out.geometry, batch.region
    maps = [(a, geo.attention(r, k)) for k, a in enumerate(out.a_local)]
    losses = [_agree(a, ra, b, rb) for (a, ra), (b, rb) in zip(maps, maps[1:], strict=False)]
    if out.a_global is not None:
        a_g = geo.global_part(out.a_global, r)
        losses += [_agree(a, ra, *a_g) for a, ra in maps]
    return torch.stack(losses).mean() if losses else None


@consistency_term("intensity", 0.1, "restoring intensity term off")
def intensity(loss: GLSGNLoss, out: GLSGNOutput, batch: TrainBatch) -> Tensor | None:
    """Restoring intensity: how much each pathway removes. The removed layer x_i - B_i,
    brought to the coarsest grid by block means, has the same magnitude (channel mean of
    |.|) as the global pathway's (or, without it, the coarsest local pathway's).

    The magnitude, not the signed layer: the signed layers' difference is exactly the
    content term's, so this term asks less (the amount removed, not its colour or sign)."""
    if not out.b_local:
        return None
    geo, r = out.geometry, batch.region
    layers = [
        (downscale(batch.x, f) - b, geo.local(r, k))
        for k, (b, f) in enumerate(zip(out.b_local, geo.factors, strict=True))
    ]
    if out.b_global is not None:
        layers.append(geo.global_part(batch.x_global - out.b_global, r))
    if len(layers) < 2:
        return None
    common = _coarsest(*(rr for _, rr in layers))
    strength = [to_grid(t, rr, common).abs().mean(1) for t, rr in layers]
    return torch.stack([_l1(s, strength[-1]) for s in strength[:-1]]).mean()


@consistency_term("semantic", 0.05, "high-level semantic term off")
def semantic(loss: GLSGNLoss, out: GLSGNOutput, batch: TrainBatch) -> Tensor:
    """High-level semantics: frozen-backbone features of each output agree with the
    target's at that output's own scale over the crop (B_out and B_1 at the crop's, B_i
    and B_g at 1/f_i and 1/global_scale), and adjacent pathways' agree with each other on
    the coarser one's grid."""
    r = batch.region
    targets = {r: batch.y}  # the target once per grid: B_out and B_1 share the crop's

    def target(rb: Region) -> Tensor:
        if rb not in targets:
            targets[rb] = to_grid(batch.y, r, rb)
        return targets[rb]

    outs = loss.outputs(out, batch)
    pairs: list[tuple[Tensor, Tensor]] = [(out.b_out, batch.y)]
    pairs += [(b, target(rb)) for b, rb in outs]
    pairs += [(to_grid(a, ra, rb), b) for (a, ra), (b, rb) in zip(outs, outs[1:], strict=False)]
    feats = _features(loss.backbone, [t for pair in pairs for t in pair])
    return torch.stack(
        [
            torch.stack(
                [_l1(fa, fb) for fa, fb in zip(feats[2 * k], feats[2 * k + 1], strict=True)]
            ).mean()
            for k in range(len(pairs))
        ]
    ).mean()


def _features(backbone: SemanticBackbone, images: list[Tensor]) -> list[list[Tensor]]:
    """The backbone's features of each image. Each distinct tensor passes once (B_i is in two
    pairs), in one batch per shape; the targets, which need no gradient, pass without a graph:
    a backward through them would be thrown away, and it was 40% of a UHR training step."""
    unique = {id(t): t for t in images}
    feats: dict[int, list[Tensor]] = {}
    for grad in (True, False):
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for key, t in unique.items():
            if t.requires_grad == grad:
                by_shape.setdefault(tuple(t.shape), []).append(key)
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            for keys in by_shape.values():
                layers = [
                    f.chunk(len(keys)) for f in backbone(torch.cat([unique[k] for k in keys]))
                ]
                for j, key in enumerate(keys):
                    feats[key] = [f[j] for f in layers]
    return [feats[id(t)] for t in images]


TERMS = terms()  # the built-in terms (`terms()` also lists any registered later)
