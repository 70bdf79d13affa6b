"""PAC_i (framework.png): the attention block of local pathway i."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .blocks import conv3x3

__all__ = ["PAC"]


class PAC(nn.Module):
    """PAC_i: the pathway's own attention A_i from E_i, and the gate it puts on its features.

    A_i (one channel, in (0, 1)) is computed from E_i alone, so the attention-consistency term,
    which compares A_i with A_g and A_{i-1}, constrains this pathway's own features: copying a
    cue cannot satisfy it. The gate combines A_i with the cues A_g and A_{i-1} (resampled to
    E_i's grid), so what the coarser pathways attended to steers what this one keeps. A_i is
    what PAC_{i+1} receives.
    """

    radius = 3  # two 3x3 convolutions for A_i, one for the gate, on E_i's grid

    def __init__(self, channels: int, n_cues: int) -> None:
        super().__init__()
        self.n_cues = n_cues
        self.attend = nn.Sequential(conv3x3(channels, channels), nn.GELU(), conv3x3(channels, 1))
        self.mix = conv3x3(1 + n_cues, 1)

    def forward(self, e: Tensor, cues: list[Tensor]) -> tuple[Tensor, Tensor]:
        """-> (A_i, gate), both (N, 1, h, w) on E_i's grid."""
        if len(cues) != self.n_cues:
            raise ValueError(f"PAC expects {self.n_cues} attention cues, got {len(cues)}")
        a = torch.sigmoid(self.attend(e))
        return a, torch.sigmoid(self.mix(torch.cat([a, *cues], dim=1)))
