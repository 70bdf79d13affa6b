"""Laplacian-pyramid fusion of the pathway outputs (LP.png)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .blocks import ResBlock, conv3x3, zero_init
from .resample import Region, resample, to_grid

__all__ = ["high_band", "PyramidFusion", "FusionOut"]


def high_band(t: Tensor, region: Region, factor: int = 2) -> Tensor:
    """High-frequency band h = t - up(down(t)) of one pyramid level: down is the block mean
    over `factor` pixels (the next pathway's scale), up is bilinear."""
    coarse = region.coarser(factor)
    return t - resample(to_grid(t, region, coarse), coarse, region)


@dataclass
class FusionOut:
    b: Tensor  # B_out, on the finest pathway's grid
    low: Tensor  # l: the base the bands are added to (B_n less its own band)
    bands: list[Tensor]  # h_1..h_n before gating; h_n is B_g's band (B_n's without it)
    details: list[Tensor]  # h'_1..h'_n: what each level adds to the up-sampled base
    masks: list[Tensor]  # m_1..m_{n-1}: gains in (0, 2) on h_k; m_n in (0, 1): B_g's share


class _MaskRefine(nn.Module):
    """Up-sampled mask -> ResBlock -> mask of the next finer level (LP.png, green arrows).

    A gain in (0, 2) on that level's band, 1 at initialisation (the last convolution starts
    at 0): the band is kept as the pathway made it until training says otherwise.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(1, channels), ResBlock(channels), zero_init(conv3x3(channels, 1))
        )

    def forward(self, m: Tensor) -> Tensor:
        return 2 * torch.sigmoid(self.body(m))


class PyramidFusion(nn.Module):
    """LP.png: B_n gives the low-frequency base l, B_g the coarsest band h_n, B_k the bands h_k.

    B_n already holds its own detail at level n, so adding B_g's band to it would count that
    level twice (and training would then switch B_g's band off). The coarsest mask therefore
    chooses: h'_n = m_n h(B_g) + (1 - m_n) h(B_n), with m_n from concat(h_n, B_n) -> ResBlocks,
    and l = B_n - h(B_n). The mask, up-sampled and refined by a ResBlock at each finer level,
    becomes the gain m_k on h_k = h(B_k): h'_k = m_k h_k.
    Reconstruction: ((l + h'_n) up + h'_{n-1}) up ... + h'_1.

    With every output ideal (B_k and B_g the target at their scales) B_out is the target at any
    m_n and at gains of 1; with every pathway the identity (initialisation) B_out is the input.
    """

    def __init__(self, n_levels: int, channels: int, blocks: int) -> None:
        super().__init__()
        self.head = nn.Sequential(
            conv3x3(6, channels),
            *(ResBlock(channels) for _ in range(blocks)),
            zero_init(conv3x3(channels, 1)),  # m_n = 1/2 at first: no preference
        )
        self.refine = nn.ModuleList(_MaskRefine(channels) for _ in range(n_levels - 1))
        self.blocks = blocks

    def forward(
        self, bs: list[tuple[Tensor, Region]], bg: tuple[Tensor, Region] | None
    ) -> FusionOut:
        """`bs`: (B_k, its region), finest first; `bg`: (B_g, its region) or None (local only)."""
        n = len(bs)
        b_n, r_n = bs[-1]
        own = high_band(b_n, r_n)
        top = high_band(to_grid(bg[0], bg[1], r_n), r_n) if bg is not None else own
        m = torch.sigmoid(self.head(torch.cat([top, b_n], dim=1)))
        bands: list[Tensor] = [None] * (n - 1) + [top]  # type: ignore[list-item]
        details: list[Tensor] = [None] * (n - 1) + [m * top + (1 - m) * own]  # type: ignore
        masks: list[Tensor] = [None] * (n - 1) + [m]  # type: ignore[list-item]
        low = b_n - own
        y = low + details[-1]
        for k in reversed(range(n - 1)):
            b_k, r_k = bs[k]
            r_up = bs[k + 1][1]
            masks[k] = self.refine[k](resample(masks[k + 1], r_up, r_k))
            bands[k] = high_band(b_k, r_k, r_k.size[0] // r_up.size[0])
            details[k] = masks[k] * bands[k]
            y = resample(y, r_up, r_k) + details[k]
        return FusionOut(b=y, low=low, bands=bands, details=details, masks=masks)

    def radius(self, factors: list[int], global_factor: int | None) -> int:
        """Receptive radius in full-resolution pixels for pathway grids `factors`, finest first."""
        f_n = factors[-1]
        # Level n: band (2x2 mean, bilinear up: 3 px), head (2 + 2 per ResBlock), B_g resampled.
        r = (3 + 2 + 2 * self.blocks) * f_n + 2 * (global_factor or f_n)
        for k in range(len(factors) - 1):
            # Mask and base up-sampled (1 px of level k+1), refine (4 px), band (block mean
            # over level k+1's pixel, bilinear up: 2 px of level k+1).
            r += 3 * factors[k + 1] + 4 * factors[k] + 2 * factors[k + 1]
        return r
