"""GLSGN (framework.png): global pathway, local pathways 1..n, Laplacian-pyramid fusion."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import Tensor, nn

from ..config import ModelConfig
from .patchnorm import NormStats
from .pathways import GlobalOut, GlobalPathway, LocalOut, LocalPathway
from .pyramid import PyramidFusion
from .resample import Region, downscale, pad_to_multiple, resample

__all__ = ["GLSGN", "GLSGNOutput"]


@dataclass
class GLSGNOutput:
    """B_out and every intermediate a figure needs; absent parts (ablations) are None or empty."""

    b_out: Tensor
    b_global: Tensor | None = None  # B_g on the global grid
    a_global: Tensor | None = None  # A_g on the global grid
    b_local: list[Tensor] = field(default_factory=list)  # B_1..B_n, each on its pathway's grid
    a_local: list[Tensor | None] = field(default_factory=list)  # A_1..A_n on E_i's grid
    bands: list[Tensor] = field(default_factory=list)  # pyramid bands h_1..h_n (h_n: B_g's)
    details: list[Tensor] = field(default_factory=list)  # h'_1..h'_n, what each level adds
    masks: list[Tensor] = field(default_factory=list)  # pyramid masks m_1..m_n, finest first


class GLSGN(nn.Module):
    """Global-Local Stepwise Generative Network.

    Order of steps as in framework.png: global, local 1, local 2, local 3; every local encoder
    gets F_g and (for i > 1) F_{i-1}, every PAC gets A_g and (for i > 1) A_{i-1}; the outputs
    meet in the Laplacian-pyramid fusion. The switches of `ModelConfig` build the ablations.

    `forward(x)` runs on the whole image (any size; padded and cropped back).
    `forward(crop, global_view=..., region=...)` is the training form: the local pathways see a
    full-resolution crop, the global pathway sees the whole image scaled down.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        if cfg.arch != "glsgn":
            raise ValueError(f"model.arch: GLSGN builds arch 'glsgn', got {cfg.arch!r}")
        self.cfg = cfg
        self.factors = [round(1 / s) for s in cfg.local_scales] if cfg.local_pathways else []
        self.global_factor = cfg.global_scale
        self.bottleneck_factor = 2 ** (len(cfg.widths) - 1)
        self.global_pathway = (
            GlobalPathway(cfg.widths, cfg.blocks, cfg.cue_channels, hands_on=cfg.local_pathways)
            if cfg.global_pathway
            else None
        )
        has_g = cfg.global_pathway
        self.local_pathways = nn.ModuleList(
            LocalPathway(
                cfg.widths,
                cfg.blocks,
                cfg.cue_channels,
                n_cues=int(has_g) + int(i > 0),
                n_attention_cues=int(has_g) + int(i > 0),
                pac=cfg.pac,
                hands_on=i + 1 < len(self.factors),
            )
            for i in range(len(self.factors))
        )
        self.fusion = (
            PyramidFusion(len(self.factors), cfg.fusion_channels, cfg.fusion_blocks)
            if self.factors and cfg.pyramid
            else None
        )

    # --- geometry --------------------------------------------------------------------------

    @property
    def pad_multiple(self) -> int:
        """Full-resolution sides are padded to a multiple of this, so every grid divides evenly."""
        a = self.cfg.align
        m = self.global_factor * a  # the global view (global pathway or reference passes)
        for k, f in enumerate(self.factors):
            ratio = self.factors[k + 1] // f if k + 1 < len(self.factors) else 1
            m = max(m, f * max(a, ratio))
        if self.fusion is not None:
            m = max(m, 2 * self.factors[-1])
        return m

    def local_radius(self, k: int) -> int:
        """Receptive radius of local pathway k, in its own pixels."""
        return self.local_pathways[k].radius()

    def fusion_radius(self) -> int:
        """Receptive radius of the pyramid fusion, in full-resolution pixels."""
        if self.fusion is None:
            return 0
        g = self.global_factor if self.global_pathway is not None else None
        return self.fusion.radius(self.factors, g)

    def global_region(self, region: Region) -> Region:
        """The global pathway's grid for a full-resolution region (the whole scaled-down image)."""
        h, w = region.size
        return Region.whole(h // self.global_factor, w // self.global_factor)

    # --- steps (also called patch by patch from glsgn.restore) ------------------------------

    def global_step(self, global_view: Tensor) -> GlobalOut | None:
        """Global pathway on I_4, the whole image scaled down by `global_scale`."""
        return self.global_pathway(global_view) if self.global_pathway is not None else None

    def reference_step(
        self, global_view: Tensor, g: GlobalOut | None, g_region: Region
    ) -> list[list[NormStats]]:
        """Each local pathway once on the whole image at the global view's scale: the
        whole-image statistics its Patch Norm layers then use on every patch."""
        stats, prev = [], None
        for k in range(len(self.factors)):
            o = self.local_step(k, global_view, g_region, g, g_region, prev, None, measure=True)
            prev = (o.cue, g_region), (o.attention, g_region.coarser(self.bottleneck_factor))
            stats.append(o.stats)
        return stats

    def local_step(
        self,
        k: int,
        x: Tensor,
        region: Region,
        g: GlobalOut | None,
        g_region: Region | None,
        prev: tuple[tuple[Tensor, Region], tuple[Tensor | None, Region]] | None,
        stats: list[NormStats] | None,
        measure: bool = False,
    ) -> LocalOut:
        """Local pathway k on `x` covering `region` of its grid. `prev` holds (F_{k-1} cue,
        its region) and (A_{k-1}, its region); every cue is resampled to `region`."""
        e_region = region.coarser(self.bottleneck_factor)
        cues, attention_cues = [], []
        if g is not None:
            cues.append(resample(g.cue, g_region, region))
            attention_cues.append(resample(g.attention, g_region, e_region))
        if k > 0:
            (cue, cue_region), (att, att_region) = prev
            cues.append(resample(cue, cue_region, region))
            if att is not None:
                attention_cues.append(resample(att, att_region, e_region))
        return self.local_pathways[k](x, cues, attention_cues, stats, measure=measure)

    def global_only_output(self, x: Tensor, region: Region, g: GlobalOut, g_view: Tensor) -> Tensor:
        """`global_only` baseline: the removed layer I_4 - B_g, up-sampled, taken off the input."""
        g_region = self.global_region(region)
        return x + resample(g.b - g_view, g_region, region)

    # --- forward -----------------------------------------------------------------------------

    def forward(
        self, x: Tensor, global_view: Tensor | None = None, region: Region | None = None
    ) -> GLSGNOutput:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"GLSGN expects (N, 3, H, W) images, got shape {tuple(x.shape)}")
        if global_view is None:
            if region is not None:
                raise ValueError("region is given without global_view")
            xp, (h, w) = pad_to_multiple(x, self.pad_multiple)
            region = Region.whole(*xp.shape[-2:])
            out = self._run(xp, region, downscale(xp, self.global_factor))
            return _crop_output(out, h, w, self)
        if region is None:
            raise ValueError("global_view is given without region (where the crop lies)")
        m = self.pad_multiple
        if any(v % m for v in (*region.size, *region.box)) or tuple(x.shape[-2:]) != region.shape:
            raise ValueError(
                f"crop {tuple(x.shape[-2:])} at {region} must match the region and be aligned "
                f"to multiples of {m}"
            )
        return self._run(x, region, global_view)

    def _run(self, x: Tensor, region: Region, global_view: Tensor) -> GLSGNOutput:
        g = self.global_step(global_view)
        g_region = self.global_region(region)
        if not self.factors:
            return GLSGNOutput(
                b_out=self.global_only_output(x, region, g, global_view),
                b_global=g.b,
                a_global=g.attention,
            )
        stats = self.reference_step(global_view, g, g_region)
        outs: list[tuple[LocalOut, Region]] = []
        for k, f in enumerate(self.factors):
            r_k = region.coarser(f)
            prev = None
            if outs:
                o, r = outs[-1]
                prev = (o.cue, r), (o.attention, r.coarser(self.bottleneck_factor))
            outs.append(
                (self.local_step(k, downscale(x, f), r_k, g, g_region, prev, stats[k]), r_k)
            )
        result = GLSGNOutput(
            b_out=outs[0][0].b,
            b_global=g.b if g is not None else None,
            a_global=g.attention if g is not None else None,
            b_local=[o.b for o, _ in outs],
            a_local=[o.attention for o, _ in outs],
        )
        if self.fusion is not None:
            fused = self.fusion(
                [(o.b, r) for o, r in outs], (g.b, g_region) if g is not None else None
            )
            result.b_out, result.bands, result.details, result.masks = (
                fused.b, fused.bands, fused.details, fused.masks
            )
        return result


def _crop_output(out: GLSGNOutput, h: int, w: int, model: GLSGN) -> GLSGNOutput:
    """Crop every map of a padded whole-image output back to the input's extent."""

    def crop(t: Tensor | None, f: int) -> Tensor | None:
        return None if t is None else t[..., : math.ceil(h / f), : math.ceil(w / f)]

    fs = model.factors
    bf = model.bottleneck_factor
    gf = model.global_factor
    return GLSGNOutput(
        b_out=crop(out.b_out, 1),
        b_global=crop(out.b_global, gf),
        a_global=crop(out.a_global, gf),
        b_local=[crop(t, f) for t, f in zip(out.b_local, fs, strict=True)],
        a_local=[crop(t, f * bf) for t, f in zip(out.a_local, fs, strict=True)],
        bands=[crop(t, f) for t, f in zip(out.bands, fs, strict=False)],
        details=[crop(t, f) for t, f in zip(out.details, fs, strict=False)],
        masks=[crop(t, f) for t, f in zip(out.masks, fs, strict=False)],
    )
