"""PAC_i (framework.png): the attention block of local pathway i."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .blocks import conv3x3

__all__ = ["PAC"]


class PAC(nn.Module):
    """PAC_i: attention map A_i from encoder features E_i and the cues A_g and A_{i-1}.

    A_i (one channel, in (0, 1)) gates E_i before the decoder; A_g and A_{i-1} arrive resampled
    to E_i's grid, so what the coarser pathways attended to steers what this one attends to.
    """

    radius = 2

    def __init__(self, channels: int, n_cues: int) -> None:
        super().__init__()
        self.n_cues = n_cues
        self.body = nn.Sequential(
            conv3x3(channels + n_cues, channels), nn.GELU(), conv3x3(channels, 1)
        )

    def forward(self, e: Tensor, cues: list[Tensor]) -> Tensor:
        if len(cues) != self.n_cues:
            raise ValueError(f"PAC expects {self.n_cues} attention cues, got {len(cues)}")
        return torch.sigmoid(self.body(torch.cat([e, *cues], dim=1)))
