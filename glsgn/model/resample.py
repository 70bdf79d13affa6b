"""Where a tensor lies in the whole image, and resampling between pathway scales.

Every change of scale inside GLSGN (cues F_g, F_{i-1}, A_g, A_{i-1} handed to a local pathway,
the up and down steps of the Laplacian pyramid) goes through `resample`, which computes each
output pixel from *absolute* image coordinates. A patch therefore gets bit-for-bit the values the
whole image would give it, which is what makes patch-streamed inference equal whole-image inference.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Region",
    "resample",
    "to_grid",
    "downscale",
    "upsample",
    "pad_to_multiple",
    "round_up",
]


@dataclass(frozen=True)
class Region:
    """A box ``(y0, y1, x0, x1)`` in a grid of ``size = (H, W)``: the whole image at one scale."""

    size: tuple[int, int]
    box: tuple[int, int, int, int]

    @classmethod
    def whole(cls, h: int, w: int) -> Region:
        return cls((h, w), (0, h, 0, w))

    @property
    def shape(self) -> tuple[int, int]:
        y0, y1, x0, x1 = self.box
        return y1 - y0, x1 - x0

    def coarser(self, factor: int) -> Region:
        """The same area in a grid `factor` times coarser; every edge must be divisible."""
        if any(v % factor for v in (*self.size, *self.box)):
            raise ValueError(f"{self} is not aligned to a factor of {factor}")
        return Region(
            (self.size[0] // factor, self.size[1] // factor), tuple(v // factor for v in self.box)
        )

    def finer(self, factor: int) -> Region:
        """The same area in a grid `factor` times finer."""
        return Region(
            (self.size[0] * factor, self.size[1] * factor), tuple(v * factor for v in self.box)
        )

    def expand(self, halo: int) -> Region:
        """Grow the box by `halo` on each side, clipped to the grid."""
        y0, y1, x0, x1 = self.box
        h, w = self.size
        return Region(
            self.size, (max(0, y0 - halo), min(h, y1 + halo), max(0, x0 - halo), min(w, x1 + halo))
        )

    def slices(self, inner: Region) -> tuple[slice, slice]:
        """Index of `inner` (same grid) inside a tensor covering this region."""
        if inner.size != self.size:
            raise ValueError(f"{inner} and {self} lie in different grids")
        (y0, y1, x0, x1), (a0, a1, b0, b1) = self.box, inner.box
        if not (y0 <= a0 <= a1 <= y1 and x0 <= b0 <= b1 <= x1):
            raise ValueError(f"{inner} is not inside {self}")
        return slice(a0 - y0, a1 - y0), slice(b0 - x0, b1 - x0)

    def crop(self, t: Tensor, inner: Region) -> Tensor:
        """The part of `t` (covering this region) that covers `inner`."""
        sy, sx = self.slices(inner)
        return t[..., sy, sx]


@functools.lru_cache(maxsize=256)
def _axis_taps(n_src: int, n_dst: int, device: torch.device, dtype: torch.dtype):
    """Bilinear taps along one whole axis, half-pixel centres (align_corners=False), edges
    clamped: indices (2, n_dst) = [i0; i1] and weights (2, n_dst) = [1 - w; w]. Built once per
    geometry and kept on the device: a patch takes a slice, nothing is uploaded per call."""
    with torch.inference_mode(False):  # cached: must serve autograd too
        y = torch.arange(n_dst, dtype=torch.float64)
        s = ((y + 0.5) * (n_src / n_dst) - 0.5).clamp(0, n_src - 1)
        i0 = s.floor()
        w = (s - i0).to(dtype)
        idx = torch.stack([i0, (i0 + 1).clamp(max=n_src - 1)]).long()
        return idx.to(device), torch.stack([1 - w, w]).to(device)


@functools.lru_cache(maxsize=2048)
def _taps(
    n_src: int,
    n_dst: int,
    d: tuple[int, int],
    s: tuple[int, int],
    trailing: int,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor]:
    """The taps of destination pixels d[0]:d[1] for a source tensor covering s[0]:s[1]: flat
    indices (2n,) into it and weights (2, n, 1 x `trailing`), ready to broadcast. Cached per
    call geometry, so a repeated call (every step of whole-image training, every restore of
    one size) dispatches no index arithmetic at all."""
    idx, w = _axis_taps(n_src, n_dst, device, dtype)
    with torch.inference_mode(False):
        idx, w = idx[:, d[0] : d[1]], w[:, d[0] : d[1]]
        if s != (0, n_src):
            # Indices outside the source tensor only occur in a halo, whose values are discarded.
            idx = (idx - s[0]).clamp(0, s[1] - s[0] - 1)
        return idx.reshape(-1), w.reshape(2, d[1] - d[0], *(1,) * trailing)


def resample(t: Tensor, src: Region, dst: Region) -> Tensor:
    """Resample `t` (covering `src`) onto `dst`: bilinear in absolute coordinates of the two grids.

    Same grid: a plain crop. Exactly 2x coarser: the mean of each 2x2 block.
    """
    if src.size == dst.size:
        return src.crop(t, dst)
    out = t
    for axis in (0, 1):
        dim = out.dim() - 2 + axis
        span = slice(2 * axis, 2 * axis + 2)
        idx, w = _taps(
            src.size[axis],
            dst.size[axis],
            dst.box[span],
            src.box[span],
            1 - axis,
            out.device,
            out.dtype,
        )
        # Both taps in one gather, then w0 a + w1 b as a multiply and a multiply-add (a sum
        # over the pair would be a strided reduction: slower on a GPU).
        a, b = out.index_select(dim, idx).unflatten(dim, (2, -1)).unbind(dim)
        out = torch.addcmul(a * w[0], b, w[1])
    return out


def to_grid(t: Tensor, src: Region, dst: Region) -> Tensor:
    """Bring `t` (covering `src`) onto `dst`'s grid: the mean of each block when `dst` is an
    integer factor coarser (as `downscale` makes the pathway inputs, so a target brought down
    this way is exactly the target at the coarser scale), else `resample`."""
    (sh, sw), (dh, dw) = src.size, dst.size
    f = sh // dh if dh and sh % dh == 0 else 0
    if f > 1 and sw == dw * f and all(v % f == 0 for v in src.box):
        t, src = downscale(t, f), src.coarser(f)
    return resample(t, src, dst)


def upsample(x: Tensor, factor: int) -> Tensor:
    """Bilinear up-sampling by an integer factor (half-pixel centres, edges clamped).

    On a patch whose origin is a multiple of the coarse pixel, every output pixel farther than
    `factor` from the patch's edge equals the whole image's, so a halo makes it exact.
    """
    if factor == 1:
        return x
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def downscale(x: Tensor, factor: int) -> Tensor:
    """Area downscaling by an integer factor: the local inputs I_1..I_3 and the global view I_4."""
    if factor == 1:
        return x
    return F.avg_pool2d(x, factor)


def round_up(v: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= v (sides padded for a pathway's grid)."""
    return -(-v // multiple) * multiple


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Replicate-pad bottom and right so both sides divide by `multiple`; -> (padded, (H, W))."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)
