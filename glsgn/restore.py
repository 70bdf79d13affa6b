"""Seam-free restoration of a whole UHR image: `restore(model, image)`.

The image is uploaded once, restored patch by patch by the model's own `stream` (the same
traversal as its forward, so the result equals processing the whole image at once, whatever
the patch grid) and downloaded once. On
CUDA, `patch_size="auto"` takes the whole image, or the largest patch that fits the free
memory (or `max_memory`), from a measured cost per pixel.
"""

from __future__ import annotations

import contextlib
import logging
import math
import weakref
from typing import get_args

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .config import Precision, autocast_dtype, parse_memory
from .model.resample import round_up
from .model.traversal import Streamable, tiles

__all__ = [
    "restore",
    "resolve_device",
    "check_precision",
    "tiles",
    "parse_memory",
    "choose_patch",
    "min_side",
]

log = logging.getLogger(__name__)

_PROBE = 256  # side of the image whose restore measures the device memory per pixel
_MARGIN = 1.25  # headroom on the measured cost: allocator rounding, cuDNN workspaces
# Patch Norm's statistics come from the reference pass at the global scale; on its coarsest
# grid a side of 1-3 cells has almost no variance, and normalising by it blew a 16x16 image up
# to 1e8. Smaller images are mirrored out to this many cells of the model's grid.
MIN_CELLS = 4


def min_side(model: Streamable) -> int:
    """The smallest side `restore` runs the model on: MIN_CELLS cells of its coarsest grid
    (64 px for three levels of widths; 128 for four, as the gpu/ profile's)."""
    return MIN_CELLS * model.pad_multiple


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> cuda when available, else cpu; a clear error for cuda without a GPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r} was asked for, but torch sees no CUDA device")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    if dev.type == "cuda" and dev.index >= (n := torch.cuda.device_count()):
        raise ValueError(f"device {str(dev)!r} was asked for, but torch sees {n} CUDA device(s)")
    return dev


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
    return image.detach().float()


def all_finite(x: Tensor) -> bool:
    """Whether `x` holds no NaN or infinity, reading it once: its minimum and maximum (NaN
    propagates into both) rather than `isfinite`, whose temporaries at 4K (an image-sized
    `abs` and two masks, 0.17 GB) were restore's largest allocation."""
    if x.numel() == 0:
        return True
    return bool(torch.isfinite(torch.stack(torch.aminmax(x))).all())


def check_precision(precision: str, dev: torch.device, option: str = "precision") -> None:
    """Refuse autocast off CUDA; `option` names the setting as the caller's user wrote it."""
    if autocast_dtype(precision) is not None and dev.type != "cuda":
        raise ValueError(
            f"{option} {precision}: autocast runs on cuda only; the device is {dev} "
            "(use fp32 there)"
        )


def _finite(x: Tensor) -> Tensor:
    if not all_finite(x):
        raise ValueError("image: contains NaN or infinite values")
    return x


# Measured device bytes per pixel, per model: {(device, precision): bytes}.
_COST: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()


def _bytes_per_pixel(model: Streamable, dev: torch.device, precision: str) -> float:
    """Peak device memory per pixel of restoring a small image in one patch, measured once."""
    cache = _COST.setdefault(model, {})
    if (dev, precision) not in cache:
        side = round_up(_PROBE, model.pad_multiple)
        x = torch.rand(1, 3, side, side, device=dev)
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        with _autocast(dev, precision):
            model.stream(x, side)
        cache[(dev, precision)] = (torch.cuda.max_memory_allocated(dev) - base) / side**2
    return cache[(dev, precision)]


def choose_patch(
    model: Streamable,
    shape: tuple[int, int],
    dev: torch.device,
    precision: str,
    patch_size: int | str,
    max_memory: int | None,
) -> tuple[int, bool]:
    """-> (patch side, whether the image-sized buffers live on the device).

    On CUDA the budget is the free memory (or `max_memory` when smaller); "auto" takes the
    largest patch whose measured cost fits, the whole image when it does. On the CPU "auto"
    is the model's `patch_size` and the buffers are host memory anyway.
    """
    cfg = model.cfg
    if dev.type != "cuda":
        if max_memory is not None:
            raise ValueError(
                "max_memory: a device memory cap, for cuda only (on the CPU, choose patch_size)"
            )
        return (cfg.patch_size if patch_size == "auto" else patch_size), True
    h, w = shape
    free, _ = torch.cuda.mem_get_info(dev)
    budget = min(0.9 * free, max_memory or math.inf)
    bpp = _MARGIN * _bytes_per_pixel(model, dev, precision)
    halo = max(s.halo() for s in model.plan)  # the step whose tiles reach furthest
    floor = h * w * model.whole_image_fraction  # the passes that always see the whole image

    def cost(p: int) -> float:
        return bpp * max(min(p + 2 * halo, h) * min(p + 2 * halo, w), floor)

    buffers = model.buffer_bytes(h, w)
    candidates = (
        [patch_size]
        if patch_size != "auto"
        else range(round_up(max(h, w), cfg.align), 2 * cfg.align - 1, -cfg.align)
    )
    for on_device in (True, False):
        for p in candidates:
            if cost(p) + buffers * on_device <= budget:
                return p, on_device
    need = cost(candidates[-1])
    raise ValueError(
        f"max_memory: restoring {w}x{h} needs about {need / 2**20:.0f} MB of device memory at "
        f"patch {candidates[-1]} (budget {budget / 2**20:.0f} MB); allow more memory or use the CPU"
    )


def _mirror_tile(x: Tensor, h: int, w: int) -> Tensor:
    """`x` extended to h x w by mirroring it again and again (its statistics kept, unlike a
    replicated border, which a few-pixel image would be nearly all of), bottom and right."""
    for dim, size in ((-2, h), (-1, w)):
        n = x.shape[dim]
        i = torch.arange(size, device=x.device) % (2 * n)
        x = x.index_select(dim, torch.where(i < n, i, 2 * n - 1 - i))
    return x


def _autocast(dev: torch.device, precision: str):
    amp = autocast_dtype(precision)
    return contextlib.nullcontext() if amp is None else torch.autocast(dev.type, dtype=amp)


@torch.no_grad()
def restore(
    model: nn.Module,
    image: Tensor | np.ndarray,
    *,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    patch_size: int | str | None = None,
    max_memory: int | str | None = None,
    halo: int | None = None,
    progress: bool = False,
) -> Tensor:
    """Restore one image of any size: (3, H, W) or (1, 3, H, W) in [0, 1] -> (3, H, W) float32
    on the CPU.

    `patch_size` (default: the model config's) changes memory and speed, never the result;
    "auto" picks it from the device's free memory, capped by `max_memory` (bytes or "2GB"; cuda
    only). `halo` defaults to the receptive radius; below it, seams appear. `precision` 'bf16'
    / 'fp16' autocast on cuda. An image with a side below `min_side(model)` is restored
    mirrored out to it (and cropped back). `progress` draws a bar over the patches.
    """
    if precision not in get_args(Precision):
        names = ", ".join(get_args(Precision))
        raise ValueError(f"precision: expected one of {names}, got {precision!r}")
    dev = resolve_device(device)
    check_precision(precision, dev)
    if not isinstance(model, Streamable):
        raise TypeError(f"model: expected GLSGN or FullResNet, got {type(model).__name__}")
    cfg = model.cfg
    patch = patch_size if patch_size is not None else cfg.patch_size
    if patch != "auto" and (
        not isinstance(patch, int) or patch < 2 * cfg.align or patch % cfg.align
    ):
        raise ValueError(
            f"patch_size: expected auto or a multiple of {cfg.align} >= "
            f"{2 * cfg.align}, got {patch!r}"
        )
    if halo is not None and (not isinstance(halo, int) or halo < 0):
        raise ValueError(f"halo: expected an int >= 0, got {halo!r}")
    cap = parse_memory(max_memory)

    x = _as_image(image)
    h, w = x.shape[-2:]
    was_training = model.training
    weights = [p for p in model.parameters() if p.dim() == 4]
    layout = (
        torch.channels_last
        if weights[0].is_contiguous(memory_format=torch.channels_last)
        else torch.contiguous_format
    )
    # channels_last: faster convolutions on CUDA and on the CPU (measured in README)
    model.eval().to(dev, memory_format=torch.channels_last)
    try:
        m, least = model.pad_multiple, min_side(model)
        hp, wp = max(round_up(h, m), least), max(round_up(w, m), least)
        patch, on_device = choose_patch(model, (hp, wp), dev, precision, patch, cap)
        if on_device and x.device != dev:  # one upload, from pinned memory
            x = x.contiguous()
            x = (x.pin_memory() if dev.type == "cuda" else x).to(dev, non_blocking=True)
        elif not on_device:
            x = x.cpu()
        xp = _finite(x)
        if h < least or w < least:
            xp = _mirror_tile(xp, max(h, least), max(w, least))
        if xp.shape[-2:] != (hp, wp):  # bottom and right, so the image keeps its grid's origin
            xp = F.pad(xp, (0, wp - xp.shape[-1], 0, hp - xp.shape[-2]), mode="replicate")
        with _autocast(dev, precision):
            out = model.stream(xp, patch, halo, progress)[0, :, :h, :w]
        # an encoder would write it as black or white; in training, validation of a diverged
        # run stops here with this message rather than logging a NaN PSNR
        if not all_finite(out):
            raise ValueError("the model's output holds NaN or infinite values")
    finally:  # the caller's model as it was (training numerics depend on the layout)
        model.train(was_training).to(memory_format=layout)
    if out.is_cuda:  # one download, into pinned memory
        host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
        host.copy_(out, non_blocking=True)
        torch.cuda.current_stream(out.device).synchronize()
        return host
    return out
