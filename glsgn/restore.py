"""Seam-free restoration of a whole UHR image by streaming patches.

Every local pathway (and the pyramid fusion) is fully convolutional with a known receptive
radius. Each patch is processed with a halo of at least that radius and only its centre is
kept, so the result equals running each pathway on the whole image at once, whatever the patch
grid. Peak memory is a few full-resolution buffers plus one patch's activations; the global
pathway runs once on the whole scaled-down image.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .model import GLSGN, FullResNet
from .model.resample import Region, downscale, pad_to_multiple, resample

__all__ = ["restore", "resolve_device", "tiles"]

log = logging.getLogger(__name__)

_AMP = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> cuda when available, else cpu; a clear error for cuda without a GPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no CUDA device")
    return dev


def tiles(grid: Region, size: int) -> Iterator[Region]:
    """Patches of `size` covering a whole grid, row by row; the last ones may be smaller."""
    h, w = grid.size
    for y in range(0, h, size):
        for x in range(0, w, size):
            yield Region(grid.size, (y, min(h, y + size), x, min(w, x + size)))


def _round_up(v: int, m: int) -> int:
    return int(math.ceil(v / m) * m)


def _as_image(image: Tensor | np.ndarray) -> Tensor:
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, Tensor):
        raise TypeError(
            f"image: expected a torch.Tensor or numpy array, got {type(image).__name__}"
        )
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3:
        raise ValueError(
            f"image: expected shape (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}"
        )
    if not image.is_floating_point():
        raise TypeError(f"image: expected floating point values in [0, 1], got {image.dtype}")
    if image.shape[-1] < 1 or image.shape[-2] < 1:
        raise ValueError(f"image: empty image of shape {tuple(image.shape)}")
    image = image.detach().to("cpu", torch.float32)
    if not torch.isfinite(image).all():
        raise ValueError("image: contains NaN or infinite values")
    return image


@torch.no_grad()
def restore(
    model: nn.Module,
    image: Tensor | np.ndarray,
    *,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    patch_size: int | None = None,
    halo: int | None = None,
    progress: bool = True,
) -> Tensor:
    """Restore one image of any size: (3, H, W) or (1, 3, H, W) in [0, 1] -> (3, H, W) float32.

    `patch_size` and `halo` default to the model config's (halo: the receptive radius).
    `patch_size` changes memory and speed, never the result; a `halo` below the receptive
    radius makes seams. `precision` 'bf16' / 'fp16' autocast on cuda.
    """
    if precision not in _AMP:
        raise ValueError(f"precision: expected one of {', '.join(_AMP)}, got {precision!r}")
    dev = resolve_device(device)
    if _AMP[precision] is not None and dev.type != "cuda":
        raise ValueError(f"precision {precision!r} (autocast) is supported on cuda only, not {dev}")
    if not isinstance(model, (GLSGN, FullResNet)):
        raise TypeError(f"model: expected GLSGN or FullResNet, got {type(model).__name__}")
    cfg = model.cfg
    patch = patch_size if patch_size is not None else cfg.patch_size
    if not isinstance(patch, int) or patch < 2 * cfg.align or patch % cfg.align:
        raise ValueError(
            f"patch_size: expected a multiple of {cfg.align} >= {2 * cfg.align}, got {patch!r}"
        )
    if halo is not None and (not isinstance(halo, int) or halo < 0):
        raise ValueError(f"halo: expected an int >= 0, got {halo!r}")
    halo = halo if halo is not None else cfg.halo

    x = _as_image(image)
    was_training = model.training
    model.eval().to(dev)
    amp = (
        torch.autocast(dev.type, dtype=_AMP[precision])
        if _AMP[precision] is not None
        else contextlib.nullcontext()
    )
    try:
        with amp:
            xp, (h, w) = pad_to_multiple(x, model.pad_multiple)
            if isinstance(model, FullResNet):
                out = _stream_fullres(model, xp, patch, halo, dev, progress)
            else:
                out = _stream_glsgn(model, xp, patch, halo, dev, progress)
    finally:
        model.train(was_training)
    return out[0, :, :h, :w]


def _level(progress: bool) -> int:
    """Log the plan where a progress bar follows; quiet callers (validation) log it at debug."""
    return logging.INFO if progress else logging.DEBUG


def _halo(radius: int, override: int | None, align: int) -> int:
    return _round_up(radius if override is None else override, align)


def _count(grid: Region, patch: int) -> int:
    return math.ceil(grid.size[0] / patch) * math.ceil(grid.size[1] / patch)


def _put(buf: Tensor, region: Region, value: Tensor) -> None:
    y0, y1, x0, x1 = region.box
    buf[..., y0:y1, x0:x1] = value.to(buf.device, buf.dtype)


def _stream_fullres(
    model: FullResNet, xp: Tensor, patch: int, halo: int | None, dev: torch.device, progress: bool
) -> Tensor:
    grid = Region.whole(*xp.shape[-2:])
    hl = _halo(model.radius(), halo, model.cfg.align)
    log.log(_level(progress), "restore fullres on %s: padded to %dx%d, patch %d, halo %d", dev,
            grid.size[1], grid.size[0], patch, hl)  # fmt: skip
    out = torch.empty_like(xp)
    for tile in tqdm(list(tiles(grid, patch)), desc="restore", unit="patch", disable=not progress):
        ext = tile.expand(hl)
        _put(out, tile, ext.crop(model.net(grid.crop(xp, ext).to(dev)), tile))
    return out


def _stream_glsgn(
    model: GLSGN, xp: Tensor, patch: int, halo: int | None, dev: torch.device, progress: bool
) -> Tensor:
    """Global pathway and reference passes whole; local pathways 1..n and fusion patch by patch."""
    cfg, factors, bf = model.cfg, model.factors, model.bottleneck_factor
    full = Region.whole(*xp.shape[-2:])
    g_view = downscale(xp, model.global_factor).to(dev)
    g = model.global_step(g_view)
    if g is not None:  # the resampling below stays in float32, whatever the autocast
        g.b, g.attention = g.b.float(), g.attention.float()
        g.cue = g.cue.float() if g.cue is not None else None
    g_region = model.global_region(full)
    stats = model.reference_step(g_view, g, g_region) if factors else []
    fusion_patch = _round_up(2 * patch, 2 * max(factors, default=1))
    grids = [full.coarser(f) for f in factors]
    log.log(_level(progress),
            "restore %s on %s: padded to %dx%d, pathways at 1/%s, patch %d, global view %dx%d",
             cfg.variant, dev, full.size[1], full.size[0], factors, patch, g_region.size[1],
             g_region.size[0])  # fmt: skip
    # The cue for pathway k + 1 averages `ratio` pixels per side: pathway k's patches are
    # multiples of it, and its halo reaches `ratio` further so those pixels are exact too.
    ratios = [b // a for a, b in itertools.pairwise(factors)] + [1] * bool(factors)
    patches = [_round_up(patch, max(cfg.align, r)) for r in ratios]
    total = sum(_count(r, p) for r, p in zip(grids, patches, strict=True))
    total += _count(full, fusion_patch)
    bar = tqdm(total=total, desc="restore", unit="patch", disable=not progress)

    if not factors:  # global_only: pointwise, no halo needed
        out = torch.empty_like(xp)
        for tile in tiles(full, fusion_patch):
            _put(out, tile, model.global_only_output(full.crop(xp, tile).to(dev), tile, g, g_view))
            bar.update()
        bar.close()
        return out

    b_bufs: list[Tensor] = []  # B_1..B_n, whole, on the CPU
    prev_cue: Tensor | None = None  # F_{k-1}'s cue, already on grid k, whole
    prev_att: tuple[Tensor | None, Region] | None = None  # A_{k-1} on E_{k-1}'s grid, whole
    for k, grid in enumerate(grids):
        nxt = grids[k + 1] if k + 1 < len(grids) else None
        ratio = ratios[k]
        hl = _halo(model.local_radius(k) + ratio, halo, max(cfg.align, ratio))
        x_k = downscale(xp, factors[k])
        b_buf = torch.empty(1, 3, *grid.size)
        cue_buf = torch.empty(1, cfg.cue_channels, *nxt.size) if nxt is not None else None
        e_grid = grid.coarser(bf)
        att_buf = torch.empty(1, 1, *e_grid.size, device=dev) if cfg.pac else None
        for tile in tiles(grid, patches[k]):
            ext = tile.expand(hl)
            prev = ((grid.crop(prev_cue, ext).to(dev), ext), prev_att) if k else None
            o = model.local_step(k, grid.crop(x_k, ext).to(dev), ext, g, g_region, prev, stats[k])
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
            bs.append((Region.whole(*buf.shape[-2:]).crop(buf, r).to(dev), r))
        _put(out, tile, ext.crop(model.fusion(bs, bg).b, tile))
        bar.update()
    bar.close()
    return out
