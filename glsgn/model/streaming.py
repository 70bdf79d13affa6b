"""Patch-streamed forward: GLSGN's steps run patch by patch over a UHR image, seam-free.

Every local pathway (and the pyramid fusion) is fully convolutional with a known receptive
radius. Each patch is processed with a halo of at least that radius and only its centre is
kept, so the result equals `GLSGN.forward` on the whole image at once, whatever the patch
grid. The steps are GLSGN's own (`global_step`, `reference_step`, `local_step`, `fusion`), in
framework.png's order; only where their inputs come from and their outputs go differs.

Image-sized buffers (the padded input, B_1..B_n, the cues handed from pathway to pathway and
B_out) live on `buffers`: the model's device when they fit (one upload, one download), else the
host, and then each patch is copied in and out.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .fullres import FullResNet
from .glsgn import GLSGN
from .resample import Region, downscale, resample

__all__ = ["tiles", "stream", "patch_sides"]

log = logging.getLogger("glsgn.restore")


def tiles(grid: Region, size: int) -> Iterator[Region]:
    """Patches of `size` covering a whole grid, row by row; the last ones may be smaller."""
    h, w = grid.size
    for y in range(0, h, size):
        for x in range(0, w, size):
            yield Region(grid.size, (y, min(h, y + size), x, min(w, x + size)))


def _round_up(v: int, m: int) -> int:
    return int(math.ceil(v / m) * m)


def _count(grid: Region, patch: int) -> int:
    return math.ceil(grid.size[0] / patch) * math.ceil(grid.size[1] / patch)


def _put(buf: Tensor, region: Region, value: Tensor) -> None:
    y0, y1, x0, x1 = region.box
    # Host-to-device and on-device copies may be asynchronous; into host memory they wait.
    buf[..., y0:y1, x0:x1] = value.to(buf.device, buf.dtype, non_blocking=buf.is_cuda)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def patch_sides(model: GLSGN | FullResNet, patch: int) -> dict[str, int | list[int]]:
    """The patch side each step works at for a requested `patch`, and its halo (in that step's
    pixels): what `stream` processes, so what a memory estimate must count."""
    cfg = model.cfg
    if isinstance(model, FullResNet):
        return {"patches": [patch], "halos": [_round_up(model.radius(), cfg.align)]}
    factors = model.factors
    ratios = _ratios(factors)
    return {
        "patches": [_round_up(patch, max(cfg.align, r)) for r in ratios],
        "halos": [_round_up(model.local_radius(k) + r, max(cfg.align, r))
                  for k, r in enumerate(ratios)],  # fmt: skip
        "fusion_patch": _round_up(patch, 2 * max(factors, default=1)),
    }


def _ratios(factors: list[int]) -> list[int]:
    # The cue for pathway k + 1 averages `ratio` pixels per side: pathway k's patches are
    # multiples of it, and its halo reaches `ratio` further so those pixels are exact too.
    return [b // a for a, b in itertools.pairwise(factors)] + [1] * bool(factors)


def stream(
    model: GLSGN | FullResNet,
    xp: Tensor,
    patch: int,
    halo: int | None = None,
    progress: bool = False,
) -> Tensor:
    """B_out of padded image `xp` (1, 3, H, W), computed patch by patch on the model's device.

    `xp` may lie on the host or on the device; B_out and every image-sized buffer are put where
    `xp` is. `halo` overrides the receptive radius (below it, seams appear).
    """
    if isinstance(model, FullResNet):
        return _stream_fullres(model, xp, patch, halo, progress)
    return _stream_glsgn(model, xp, patch, halo, progress)


def _level(progress: bool) -> int:
    """Log the plan where a progress bar follows; quiet callers (validation) log it at debug."""
    return logging.INFO if progress else logging.DEBUG


def _halo(radius: int, override: int | None, align: int) -> int:
    return _round_up(radius if override is None else override, align)


def _stream_fullres(
    model: FullResNet, xp: Tensor, patch: int, halo: int | None, progress: bool
) -> Tensor:
    dev = _device(model)
    grid = Region.whole(*xp.shape[-2:])
    hl = _halo(model.radius(), halo, model.cfg.align)
    log.log(_level(progress), "restore fullres on %s: padded to %dx%d, patch %d, halo %d", dev,
            grid.size[1], grid.size[0], patch, hl)  # fmt: skip
    out = torch.empty_like(xp)
    bar = _bar(_count(grid, patch), progress)
    for tile in tiles(grid, patch):
        ext = tile.expand(hl)
        _put(out, tile, ext.crop(model.net(grid.crop(xp, ext).to(dev, non_blocking=True)), tile))
        bar.update()
    bar.close()
    return out


def _bar(total: int, progress: bool) -> tqdm:
    return tqdm(total=total, desc="restore", unit="patch", disable=not progress)


def _stream_glsgn(
    model: GLSGN, xp: Tensor, patch: int, halo: int | None, progress: bool
) -> Tensor:
    """Global pathway and reference passes whole; local pathways 1..n and fusion patch by patch."""
    cfg, factors, bf = model.cfg, model.factors, model.bottleneck_factor
    dev = _device(model)
    full = Region.whole(*xp.shape[-2:])
    g_view = downscale(xp, model.global_factor).to(dev, non_blocking=True)
    g = model.global_step(g_view)
    if g is not None:  # the resampling below stays in float32, whatever the autocast
        g.b, g.attention = g.b.float(), g.attention.float()
        g.cue = g.cue.float() if g.cue is not None else None
    g_region = model.global_region(full)
    stats = model.reference_step(g_view, g, g_region) if factors else []
    sides = patch_sides(model, patch)
    fusion_patch = sides["fusion_patch"]
    grids = [full.coarser(f) for f in factors]
    log.log(_level(progress),
            "restore %s on %s: padded to %dx%d, pathways at 1/%s, patch %d, global view %dx%d, "
            "buffers on %s", cfg.variant, dev, full.size[1], full.size[0], factors, patch,
            g_region.size[1], g_region.size[0], xp.device)  # fmt: skip
    patches = sides["patches"]
    total = sum(_count(r, p) for r, p in zip(grids, patches, strict=True))
    bar = _bar(total + _count(full, fusion_patch), progress)

    if not factors:  # global_only: pointwise, no halo needed
        out = torch.empty_like(xp)
        for tile in tiles(full, fusion_patch):
            x_t = full.crop(xp, tile).to(dev, non_blocking=True)
            _put(out, tile, model.global_only_output(x_t, tile, g, g_view))
            bar.update()
        bar.close()
        return out

    ratios = _ratios(factors)
    b_bufs: list[Tensor] = []  # B_1..B_n, whole, beside xp
    prev_cue: Tensor | None = None  # F_{k-1}'s cue, already on grid k, whole
    prev_att: tuple[Tensor | None, Region] | None = None  # A_{k-1} on E_{k-1}'s grid, whole
    for k, grid in enumerate(grids):
        nxt = grids[k + 1] if k + 1 < len(grids) else None
        ratio = ratios[k]
        hl = sides["halos"][k] if halo is None else _halo(halo, None, max(cfg.align, ratio))
        x_k = downscale(xp, factors[k])
        b_buf = xp.new_empty(1, 3, *grid.size)
        cue_buf = xp.new_empty(1, cfg.cue_channels, *nxt.size) if nxt is not None else None
        e_grid = grid.coarser(bf)
        att_buf = torch.empty(1, 1, *e_grid.size, device=dev) if cfg.pac else None
        for tile in tiles(grid, patches[k]):
            ext = tile.expand(hl)
            prev = None
            if k:
                prev = (grid.crop(prev_cue, ext).to(dev, non_blocking=True), ext), prev_att
            x_t = grid.crop(x_k, ext).to(dev, non_blocking=True)
            o = model.local_step(k, x_t, ext, g, g_region, prev, stats[k])
            _put(b_buf, tile, ext.crop(o.b, tile))
            if cue_buf is not None:  # F_k's cue for pathway k + 1, on its grid
                dst = Region(nxt.size, tuple(v // ratio for v in tile.box))
                _put(cue_buf, dst, resample(o.cue.float(), ext, dst))
            if att_buf is not None:
                e_tile = tile.coarser(bf)
                _put(att_buf, e_tile, ext.coarser(bf).crop(o.attention, e_tile))
            bar.update()
        b_bufs.append(b_buf)
        prev_cue, prev_att = cue_buf, (att_buf, e_grid)
        del x_k  # full-resolution buffers live only while needed

    if model.fusion is None:  # no_pyramid: B_1 is the output
        bar.update(_count(full, fusion_patch))
        bar.close()
        return b_bufs[0]

    hf = _round_up(model.fusion_radius(), 2 * factors[-1])
    bg = (g.b, g_region) if g is not None else None
    out = torch.empty_like(xp)
    for tile in tiles(full, fusion_patch):
        ext = tile.expand(hf)
        bs = []
        for f, buf in zip(factors, b_bufs, strict=True):
            r = ext.coarser(f)
            bs.append((Region.whole(*buf.shape[-2:]).crop(buf, r).to(dev, non_blocking=True), r))
        _put(out, tile, ext.crop(model.fusion(bs, bg).b, tile))
        bar.update()
    bar.close()
    return out
