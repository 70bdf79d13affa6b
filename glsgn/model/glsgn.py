"""GLSGN (framework.png): global pathway, local pathways 1..n, Laplacian-pyramid fusion."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from ..variants import architecture
from .patchnorm import NormStats
from .pathways import GlobalOut, GlobalPathway, LocalOut, LocalPathway
from .pyramid import PyramidFusion
from .resample import Region, downscale, pad_to_multiple, resample
from .traversal import Canvas, Step, Tiling, level, log, part, plane_bytes

__all__ = ["GLSGN", "GLSGNOutput", "Geometry", "Handoff"]


@dataclass(frozen=True)
class Geometry:
    """Where each pathway's maps lie, relative to the full-resolution grid (framework.png's
    scales): what the traversal, the losses and the figures need to place an output."""

    factors: tuple[int, ...] = ()  # local pathways 1..n: 1 / local_scales
    global_factor: int = 1  # the global view I_4: 1 / global_scale
    bottleneck: int = 1  # E_i's grid (where A_i lies), relative to its pathway's

    def ratio(self, k: int) -> int:
        """Pathway k + 1's scale over pathway k's (1 after the last)."""
        return self.factors[k + 1] // self.factors[k] if k + 1 < len(self.factors) else 1

    def local(self, region: Region, k: int) -> Region:
        return region.coarser(self.factors[k])

    def attention(self, region: Region, k: int) -> Region:
        return region.coarser(self.factors[k] * self.bottleneck)

    def global_grid(self, region: Region) -> Region:
        """The global pathway's grid for a full-resolution region: the whole scaled-down image."""
        h, w = region.size
        return Region.whole(h // self.global_factor, w // self.global_factor)

    def global_part(self, t: Tensor, region: Region) -> tuple[Tensor, Region]:
        """The part of a global-grid map (B_g, A_g, I_4) that covers `region`, and where it lies."""
        r = region.coarser(self.global_factor)
        return self.global_grid(region).crop(t, r), r


@dataclass
class Handoff:
    """What local pathway k hands to pathway k + 1: the cue F_k (already on k + 1's grid) and
    A_k (on E_k's grid), each with the region its tensor covers."""

    cue: Tensor  # F_k on k + 1's grid (tiles), or on its own when pathway k was one tile
    cue_region: Region
    attention: Tensor | None
    attention_region: Region

    def crop(self, region: Region, device: torch.device) -> Handoff:
        """The cue over `region` on `device` (A_k stays whole: it is small, and on the device).
        F_k on its own grid is passed as it is: `local_step` resamples it, as a forward would."""
        if self.cue_region.size != region.size:
            return self
        cue = part(self.cue, self.cue_region, region).to(device, non_blocking=True)
        return Handoff(cue, region, self.attention, self.attention_region)


@dataclass
class GLSGNOutput:
    """B_out and every intermediate a figure needs; absent parts (ablations) are None or empty.
    `geometry` places each map (B_i on its pathway's grid, A_i on E_i's, B_g and A_g on the
    global grid)."""

    b_out: Tensor
    b_global: Tensor | None = None  # B_g on the global grid
    a_global: Tensor | None = None  # A_g on the global grid
    b_local: list[Tensor] = field(default_factory=list)  # B_1..B_n, each on its pathway's grid
    a_local: list[Tensor | None] = field(default_factory=list)  # A_1..A_n on E_i's grid
    bands: list[Tensor] = field(default_factory=list)  # pyramid bands h_1..h_n (h_n: B_g's)
    details: list[Tensor] = field(default_factory=list)  # h'_1..h'_n, what each level adds
    masks: list[Tensor] = field(default_factory=list)  # pyramid masks m_1..m_n, finest first
    geometry: Geometry = field(default_factory=Geometry)


class GLSGN(nn.Module):
    """Global-Local Stepwise Generative Network.

    Order of steps as in framework.png: global, local 1, local 2, local 3; every local encoder
    gets F_g and (for i > 1) F_{i-1}, every PAC gets A_g and (for i > 1) A_{i-1}; the outputs
    meet in the Laplacian-pyramid fusion. The switches of `ModelConfig` build the ablations.

    `forward(x)` runs on the whole image (any size; padded and cropped back).
    `forward(crop, global_view=..., region=...)` is the training form: the local pathways see a
    full-resolution crop, the global pathway sees the whole image scaled down.
    `stream(xp, patch)` is the same traversal patch by patch (`glsgn.restore`).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.arch != "glsgn":
            raise ValueError(f"model.arch: GLSGN builds arch 'glsgn', got {cfg.arch!r}")
        self.cfg = cfg
        factors = tuple(round(1 / s) for s in cfg.local_scales) if cfg.local_pathways else ()
        self.geometry = Geometry(factors, cfg.global_scale, 2 ** (len(cfg.widths) - 1))
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
                hands_on=i + 1 < len(factors),
            )
            for i in range(len(factors))
        )
        self.fusion = (
            PyramidFusion(len(factors), cfg.fusion_channels, cfg.fusion_blocks)
            if factors and cfg.pyramid
            else None
        )
        self.plan = self._plan()

    # --- geometry --------------------------------------------------------------------------

    @property
    def pad_multiple(self) -> int:
        """Full-resolution sides are padded to a multiple of this, so every grid divides evenly."""
        return max(s.multiple * s.factor for s in self.plan) if self.plan else 1

    @property
    def whole_image_fraction(self) -> float:
        """Share of the image's pixels the passes that always see the whole image work on
        (the global pathway and the reference passes, at the global view's scale)."""
        return 1 / self.geometry.global_factor**2

    def _plan(self) -> list[Step]:
        """The steps that run tile by tile, in order, and the maps each keeps (framework.png)."""
        cfg, geo = self.cfg, self.geometry
        fs, a, bf = geo.factors, cfg.align, geo.bottleneck
        # The global view (global pathway or reference passes) must divide evenly too.
        plan = [Step("global view", geo.global_factor, a, 0, exact_halo=True, whole=True)]
        if not fs:  # global_only: the removed layer, up-sampled pointwise
            return plan + [Step("global only", 1, 2, 0, {"out": (3, 1, False)}, True)]
        for k, f in enumerate(fs):
            # The cue for pathway k + 1 averages `ratio` pixels per side: pathway k's tiles are
            # multiples of it, and its halo reaches `ratio` further so those pixels are exact.
            ratio = geo.ratio(k)
            planes = {"b": (3, f, False)}
            if k + 1 < len(fs):
                planes["cue"] = (cfg.cue_channels, fs[k + 1], False)
            if cfg.pac:
                planes["attention"] = (1, f * bf, True)
            radius = self.local_pathways[k].radius() + ratio
            plan.append(Step(f"local {k + 1}", f, max(a, ratio), radius, planes))
        if self.fusion is not None:
            radius = self.fusion.radius(fs, geo.global_factor if self.global_pathway else None)
            # no plane of its own: streamed, B_out is written over B_1's (`_fuse`)
            plan.append(Step("fusion", 1, 2 * fs[-1], radius, exact_halo=True))
        return plan

    def buffer_bytes(self, h: int, w: int) -> int:
        """float32 bytes of the image-sized maps a restore of a padded h x w image keeps."""
        return plane_bytes(self.plan, h, w)

    # --- steps ------------------------------------------------------------------------------

    def global_step(self, global_view: Tensor) -> GlobalOut | None:
        """Global pathway on I_4, the whole image scaled down by `global_scale`."""
        return self.global_pathway(global_view) if self.global_pathway is not None else None

    def reference_step(
        self, global_view: Tensor, g: GlobalOut | None, g_region: Region
    ) -> list[list[NormStats]]:
        """Each local pathway once on the whole image at the global view's scale: the
        whole-image statistics its Patch Norm layers then use on every patch."""
        stats, prev = [], None
        e_region = g_region.coarser(self.geometry.bottleneck)
        for k in range(len(self.geometry.factors)):
            o = self.local_step(k, global_view, g_region, g, g_region, prev, None, measure=True)
            prev = Handoff(o.cue, g_region, o.attention, e_region)
            stats.append(o.stats)
        return stats

    def local_step(
        self,
        k: int,
        x: Tensor,
        region: Region,
        g: GlobalOut | None,
        g_region: Region,
        prev: Handoff | None,
        stats: list[NormStats] | None,
        measure: bool = False,
    ) -> LocalOut:
        """Local pathway k on `x` covering `region` of its grid; every cue (F_g, A_g, and from
        `prev` F_{k-1}, A_{k-1}) is resampled to `region`."""
        e_region = region.coarser(self.geometry.bottleneck)
        cues, attention_cues = [], []
        if g is not None:
            cues.append(resample(g.cue, g_region, region))
            attention_cues.append(resample(g.attention, g_region, e_region))
        if prev is not None:
            cues.append(resample(prev.cue, prev.cue_region, region))
            if prev.attention is not None:
                attention_cues.append(resample(prev.attention, prev.attention_region, e_region))
        return self.local_pathways[k](x, cues, attention_cues, stats, measure=measure)

    def global_only_output(self, x: Tensor, region: Region, g: GlobalOut, g_view: Tensor) -> Tensor:
        """`global_only` baseline: the removed layer I_4 - B_g, up-sampled, taken off the input."""
        return x + resample(g.b - g_view, self.geometry.global_grid(region), region)

    # --- the traversal ----------------------------------------------------------------------

    def traverse(
        self, x: Tensor, region: Region, global_view: Tensor, tiling: Tiling
    ) -> GLSGNOutput:
        """framework.png's steps in order over `region` (what `x` covers; `x` may lie on the
        host): global pathway and reference passes whole, then local pathways 1..n and the
        fusion tile by tile. One tile: forward and training; many: `stream`."""
        dev, geo = global_view.device, self.geometry
        g = _float(self.global_step(global_view))  # resampling stays in float32 under autocast
        g_region = geo.global_grid(region)
        out = GLSGNOutput(
            b_out=x,
            b_global=g.b if g is not None else None,
            a_global=g.attention if g is not None else None,
            geometry=geo,
        )
        tiling.start([(s, region.coarser(s.factor)) for s in self.plan[1:]])
        try:
            if not geo.factors:
                out.b_out = self._global_only(self.plan[1], x, region, g, global_view, tiling)
                return out
            stats = self.reference_step(global_view, g, g_region)
            prev: Handoff | None = None
            bs: list[Canvas] = []
            for k in range(len(geo.factors)):
                maps = self._local(k, x, region, g, g_region, prev, stats[k], tiling, dev)
                bs.append(maps["b"])
                att = maps.get("attention")
                out.b_local.append(maps["b"].t)
                out.a_local.append(att.t if att is not None else None)
                if "cue" in maps:
                    prev = Handoff(
                        maps["cue"].t, maps["cue"].area, out.a_local[-1], geo.attention(region, k)
                    )
            out.b_out = out.b_local[0]  # no_pyramid: B_out = B_1
            if self.fusion is not None:
                self._fuse(bs, out, region, g, g_region, tiling, dev)
            return out
        finally:
            tiling.close()

    def _global_only(self, step, x, region, g, global_view, tiling) -> Tensor:
        out = Canvas.planes(step, region, x, global_view.device)["out"]
        for tile, _ in tiling.tiles(step, region):
            x_t = part(x, region, tile).to(global_view.device, non_blocking=True)
            out.put(tile, self.global_only_output(x_t, tile, g, global_view))
        return out.t

    def _local(self, k, x, region, g, g_region, prev, stats, tiling, dev) -> dict[str, Canvas]:
        """Local pathway k tile by tile: B_k, and what it hands on (F_k on k + 1's grid, A_k)."""
        step, bf = self.plan[1 + k], self.geometry.bottleneck
        area = region.coarser(step.factor)
        maps = Canvas.planes(step, region, x, dev)
        for tile, ext in tiling.tiles(step, area):
            # I_k downscaled tile by tile (area pooling is per block: the same values as the
            # whole I_k's), so a restore keeps no image-sized copy of it
            x_t = downscale(part(x, region, ext.finer(step.factor)), step.factor)
            x_t = x_t.to(dev, non_blocking=True)
            here = prev.crop(ext, dev) if prev is not None else None
            o = self.local_step(k, x_t, ext, g, g_region, here, stats)
            maps["b"].put(tile, part(o.b, ext, tile))
            if "cue" in maps and tile == area:  # one tile: F_k as it is (`Handoff.crop`)
                maps["cue"].area, maps["cue"].t = ext, o.cue.float()
            elif "cue" in maps:  # F_k on k + 1's grid, tile by tile
                dst = tile.coarser(self.geometry.ratio(k))
                maps["cue"].put(dst, resample(o.cue.float(), ext, dst))
            if "attention" in maps:
                e_tile = tile.coarser(bf)
                maps["attention"].put(e_tile, part(o.attention, ext.coarser(bf), e_tile))
        return maps

    def _fuse(self, bs, out, region, g, g_region, tiling, dev) -> None:
        """The pyramid fusion tile by tile; a single tile keeps its bands and masks too.

        Streamed, B_out is written over B_1's canvas (which then holds B_out, not B_1), so
        restore keeps no second full-resolution image: a tile's result waits until no later
        tile's halo reads B_1 there. Tiles come row by row and their halos' tops never move up,
        so a result is written once the current halo starts below it: about two rows of tiles
        wait (24 MB at 4K against 100 MB for a separate canvas).
        """
        step = self.plan[-1]
        bg = (g.b, g_region) if g is not None else None
        streamed = tiling.patch is not None
        b_out = bs[0] if streamed else Canvas(region, 3, out.b_out)
        waiting: list[tuple[Region, Tensor]] = []
        for tile, ext in tiling.tiles(step, region):
            levels = [ext.coarser(f) for f in self.geometry.factors]
            fused = self.fusion([(b.crop(r, dev), r) for b, r in zip(bs, levels, strict=True)], bg)
            keep = part(fused.b, ext, tile)  # one tile (forward): fused.b itself, uncopied
            if tile != ext:  # the tile alone, beside the canvas (a GPU's budget is one patch)
                keep = keep.to(b_out.device, b_out.dtype, copy=True)
            waiting.append((tile, keep))
            while waiting and waiting[0][0].box[1] <= ext.box[0]:
                b_out.put(*waiting.pop(0))
        for done in waiting:
            b_out.put(*done)
        out.b_out = b_out.t
        if streamed:  # B_1's canvas holds B_out now
            out.b_local[0] = None
        else:
            out.bands, out.details, out.masks = fused.bands, fused.details, fused.masks

    # --- forward and stream -----------------------------------------------------------------

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
            out = self.traverse(xp, region, downscale(xp, self.geometry.global_factor), Tiling())
            return _crop_output(out, h, w)
        if region is None:
            raise ValueError("global_view is given without region (where the crop lies)")
        m = self.pad_multiple
        if any(v % m for v in (*region.size, *region.box)) or tuple(x.shape[-2:]) != region.shape:
            raise ValueError(
                f"crop {tuple(x.shape[-2:])} at {region} must match the region and be aligned "
                f"to multiples of {m}"
            )
        return self.traverse(x, region, global_view, Tiling())

    def stream(
        self, xp: Tensor, patch: int, halo: int | None = None, progress: bool = False
    ) -> Tensor:
        """B_out of padded image `xp` (1, 3, H, W), patch by patch on the model's device, equal
        to `forward`'s whatever the patch grid. `xp` and every image-sized map stay where `xp`
        is (host or device); `halo` overrides the receptive radius (below it, seams appear)."""
        dev = next(self.parameters()).device
        full = Region.whole(*xp.shape[-2:])
        g_view = downscale(xp, self.geometry.global_factor).to(dev, non_blocking=True)
        log.log(
            level(progress),
            "restore %s on %s: padded to %dx%d, pathways at 1/%s, patch %d, global view "
            "%dx%d, buffers on %s",
            architecture(self.cfg),
            dev,
            full.size[1],
            full.size[0],
            self.geometry.factors,
            patch,
            g_view.shape[-1],
            g_view.shape[-2],
            xp.device,
        )
        return self.traverse(xp, full, g_view, Tiling(patch, halo, progress)).b_out


def _float(g: GlobalOut | None) -> GlobalOut | None:
    if g is None:
        return None
    cue = g.cue.float() if g.cue is not None else None
    return GlobalOut(b=g.b.float(), cue=cue, attention=g.attention.float())


def _crop_output(out: GLSGNOutput, h: int, w: int) -> GLSGNOutput:
    """Crop every map of a padded whole-image output back to the input's extent."""
    geo = out.geometry

    def crop(t: Tensor | None, f: int) -> Tensor | None:
        return None if t is None else t[..., : math.ceil(h / f), : math.ceil(w / f)]

    fs, bf, gf = geo.factors, geo.bottleneck, geo.global_factor
    return GLSGNOutput(
        b_out=crop(out.b_out, 1),
        b_global=crop(out.b_global, gf),
        a_global=crop(out.a_global, gf),
        b_local=[crop(t, f) for t, f in zip(out.b_local, fs, strict=True)],
        a_local=[crop(t, f * bf) for t, f in zip(out.a_local, fs, strict=True)],
        bands=[crop(t, f) for t, f in zip(out.bands, fs, strict=False)],
        details=[crop(t, f) for t, f in zip(out.details, fs, strict=False)],
        masks=[crop(t, f) for t, f in zip(out.masks, fs, strict=False)],
        geometry=geo,
    )
