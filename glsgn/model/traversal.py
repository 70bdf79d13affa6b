"""One traversal of a network's steps, over one tile or many: how forward and restore share code.

A network is a short plan of fully convolutional `Step`s, each on its own grid (GLSGN: local
pathways 1..n, then the pyramid fusion; the global pathway and the reference passes run whole
before them). `GLSGN.traverse` walks that plan once. `forward` runs it on a single tile, the
padded image or a training crop, with no halo; `restore` runs it on patches, each with a halo
of at least the step's receptive radius, keeping only the patch's centre, so the streamed result
equals the single-tile one whatever the patch grid.

Image-sized maps handed from step to step (B_1..B_n, the cues between pathways, B_out) are
`Canvas`es: filled tile by tile beside the input (the device when it fits, else the host; each
tile is then copied in and out), or, for a single tile, the step's own output, uncopied.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .resample import Region, round_up

__all__ = ["Step", "Tiling", "Canvas", "Streamable", "tiles", "part", "plane_bytes"]

log = logging.getLogger("glsgn.restore")


@dataclass(frozen=True)
class Step:
    """One fully convolutional step over a grid `factor` times coarser than full resolution."""

    name: str
    factor: int
    multiple: int  # tiles' sides and origins are multiples of this, in the step's pixels
    radius: int  # receptive radius in the step's pixels; its halo is this, rounded up
    # The image-sized maps the step fills: name -> (channels, grid factor, on the model's device)
    planes: dict[str, tuple[int, int, bool]] = field(default_factory=dict)
    exact_halo: bool = False  # a halo override (to show seams) does not apply to this step
    whole: bool = False  # runs on the whole image at its grid, its input downscaled once

    def patch(self, patch: int) -> int:
        return round_up(patch, self.multiple)

    def halo(self, override: int | None = None) -> int:
        r = self.radius if override is None or self.exact_halo else override
        return round_up(r, self.multiple)


@runtime_checkable
class Streamable(Protocol):
    """What `glsgn.restore` needs of a network: its plan and how to stream it."""

    plan: list[Step]
    pad_multiple: int
    whole_image_fraction: float

    def buffer_bytes(self, h: int, w: int) -> int: ...

    def stream(
        self, xp: Tensor, patch: int, halo: int | None = None, progress: bool = False
    ) -> Tensor: ...


def tiles(area: Region, size: int) -> Iterator[Region]:
    """Tiles of side `size` covering `area`, row by row; the last ones may be smaller."""
    y0, y1, x0, x1 = area.box
    for y in range(y0, y1, size):
        for x in range(x0, x1, size):
            yield Region(area.size, (y, min(y1, y + size), x, min(x1, x + size)))


def _within(r: Region, area: Region) -> Region:
    (y0, y1, x0, x1), (a0, a1, b0, b1) = r.box, area.box
    return Region(r.size, (max(y0, a0), min(y1, a1), max(x0, b0), min(x1, b1)))


@dataclass
class Tiling:
    """How a traversal covers each step's grid: one tile without halo (`patch` None: forward,
    training) or tiles of `patch` of the step's pixels with halos (restore)."""

    patch: int | None = None
    halo: int | None = None  # overrides the receptive radius (below it, seams appear)
    progress: bool = False
    bar: tqdm | None = None

    def tiles(self, step: Step, area: Region) -> Iterator[tuple[Region, Region]]:
        """(tile, tile with its halo) pairs covering `area` of the step's grid."""
        if self.patch is None:
            yield area, area
            return
        halo = step.halo(self.halo)
        for tile in tiles(area, step.patch(self.patch)):
            yield tile, _within(tile.expand(halo), area)
            if self.bar is not None:
                self.bar.update()

    def count(self, step: Step, area: Region) -> int:
        if self.patch is None:
            return 1
        p = step.patch(self.patch)
        return math.ceil(area.shape[0] / p) * math.ceil(area.shape[1] / p)

    def start(self, plan: list[tuple[Step, Region]]) -> None:
        """A progress bar over every tile of the plan (restore)."""
        if self.progress and self.patch is not None:
            total = sum(self.count(s, a) for s, a in plan)
            self.bar = tqdm(total=total, desc="restore", unit="patch")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Canvas:
    """An image-sized map over `area` of its grid, assembled tile by tile.

    Lies beside `like` (its device and dtype), or on `device`. A single tile covering the whole
    area is kept as it is: the single-tile traversal copies nothing.
    """

    def __init__(self, area: Region, channels: int, like: Tensor, device=None) -> None:
        self.area, self.channels = area, channels
        self.device = like.device if device is None else device
        self.dtype = like.dtype
        self.batch = like.shape[0]
        self.t: Tensor | None = None

    @classmethod
    def planes(cls, step: Step, region: Region, like: Tensor, device) -> dict[str, Canvas]:
        """The canvases `step` fills, as its `planes` say (so `bytes` counts what is made)."""
        return {
            name: cls(region.coarser(f), c, like, device if on_device else None)
            for name, (c, f, on_device) in step.planes.items()
        }

    def put(self, tile: Region, value: Tensor) -> None:
        """Write `value` (covering `tile`) into the canvas."""
        value = value if value.dtype == self.dtype else value.to(self.dtype)
        if self.t is None and tile == self.area and value.device == self.device:
            self.t = value
            return
        if self.t is None:
            self.t = torch.empty(
                self.batch, self.channels, *self.area.shape, device=self.device, dtype=self.dtype
            )
        sy, sx = self.area.slices(tile)
        # Host-to-device and on-device copies may be asynchronous; into host memory they wait.
        self.t[..., sy, sx] = value.to(self.device, non_blocking=self.t.is_cuda)

    def crop(self, r: Region, device) -> Tensor:
        """The part covering `r`, on `device`."""
        return part(self.t, self.area, r).to(device, non_blocking=True)


def part(t: Tensor, covers: Region, r: Region) -> Tensor:
    """The part of `t` (covering `covers`) over `r`: `t` itself when that is all of it, so a
    single-tile traversal builds exactly the autograd graph of a plain forward (no slicing
    nodes: its gradients sum in the same order)."""
    return t if r == covers else covers.crop(t, r)


def plane_bytes(plan: list[Step], h: int, w: int) -> int:
    """float32 bytes of every canvas a plan fills for an h x w image, of its input and of the
    input of each step that runs whole (downscaled once; the others downscale tile by tile)."""
    planes = 3 + sum(c / f**2 for s in plan for c, f, _ in s.planes.values())
    planes += sum(3 / s.factor**2 for s in plan if s.whole and s.factor > 1)
    return int(4 * h * w * planes)


def level(progress: bool) -> int:
    """Log the plan where a progress bar follows; quiet callers (validation) log it at debug."""
    return logging.INFO if progress else logging.DEBUG
