"""Laplacian-pyramid fusion of the pathway outputs (LP.png)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .blocks import ResBlock, conv3x3
from .resample import Region, resample

__all__ = ["high_band", "PyramidFusion", "FusionOut"]


def high_band(t: Tensor, region: Region) -> Tensor:
    """High-frequency band h = t - up(down(t)) of one pyramid level (2x2 mean down, bilinear up)."""
    half = region.coarser(2)
    return t - resample(resample(t, region, half), half, region)


@dataclass
class FusionOut:
    b: Tensor  # B_out, on the finest pathway's grid
    bands: list[Tensor]  # h_1..h_n before gating (h_n from B_g, or from B_n without it)
    masks: list[Tensor]  # gates m_1..m_n, finest first


class _MaskRefine(nn.Module):
    """Up-sampled mask -> ResBlock -> mask of the next finer level (LP.png, green arrows)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3x3(1, channels), ResBlock(channels), conv3x3(channels, 1))

    def forward(self, m: Tensor) -> Tensor:
        return torch.sigmoid(self.body(m))


class PyramidFusion(nn.Module):
    """LP.png: B_n is the low-frequency base l; h_n is B_g's high band; h_1..h_{n-1} are B_k's.

    concat(h_n, B_n) -> ResBlocks -> Mask gates h_n; the mask, up-sampled and refined by a
    ResBlock at each finer level, gates h_k.
    Reconstruction: ((l + h'_n) up + h'_{n-1}) up ... + h'_1.
    """

    def __init__(self, n_levels: int, channels: int, blocks: int) -> None:
        super().__init__()
        self.head = nn.Sequential(
            conv3x3(6, channels),
            *(ResBlock(channels) for _ in range(blocks)),
            conv3x3(channels, 1),
        )
        self.refine = nn.ModuleList(_MaskRefine(channels) for _ in range(n_levels - 1))
        self.blocks = blocks

    def forward(
        self, bs: list[tuple[Tensor, Region]], bg: tuple[Tensor, Region] | None
    ) -> FusionOut:
        """`bs`: (B_k, its region), finest first; `bg`: (B_g, its region) or None (local only)."""
        n = len(bs)
        b_n, r_n = bs[-1]
        top = resample(bg[0], bg[1], r_n) if bg is not None else b_n
        bands: list[Tensor] = [None] * n  # type: ignore[list-item]
        masks: list[Tensor] = [None] * n  # type: ignore[list-item]
        bands[-1] = high_band(top, r_n)
        masks[-1] = torch.sigmoid(self.head(torch.cat([bands[-1], b_n], dim=1)))
        y = b_n + masks[-1] * bands[-1]
        for k in reversed(range(n - 1)):
            b_k, r_k = bs[k]
            r_up = bs[k + 1][1]
            masks[k] = self.refine[k](resample(masks[k + 1], r_up, r_k))
            bands[k] = high_band(b_k, r_k)
            y = resample(y, r_up, r_k) + masks[k] * bands[k]
        return FusionOut(b=y, bands=bands, masks=masks)

    def radius(self, factors: list[int], global_factor: int | None) -> int:
        """Receptive radius in full-resolution pixels for pathway grids `factors`, finest first."""
        f_n = factors[-1]
        r = (2 + 2 * self.blocks) * f_n + 4 * f_n + 2 * (global_factor or f_n)
        for k in range(len(factors) - 1):
            r += 4 * factors[k + 1] + 8 * factors[k]
        return r
