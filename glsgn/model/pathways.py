"""The four restoring pathways of framework.png: one global, three local (one class each)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .blocks import Decoder, Encoder, ResBlock, conv3x3, zero_init
from .pac import PAC
from .patchnorm import NormStats
from .resample import upsample

__all__ = ["SpatialAttention", "GlobalPathway", "GlobalOut", "LocalPathway", "LocalOut"]


class SpatialAttention(nn.Module):
    """ "Spatial Attention" of the global pathway: A_g from channel-pooled decoder features.

    Replicate padding: zeros around the channel mean and max read as "nothing here" and drew a
    frame into A_g along the image's border.
    """

    radius = 3

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3, padding_mode="replicate")

    def forward(self, f: Tensor) -> Tensor:
        pooled = torch.cat([f.mean(dim=1, keepdim=True), f.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


@dataclass
class GlobalOut:
    """What the global pathway hands on: B_g, the cue F_g and A_g."""

    b: Tensor
    cue: Tensor | None  # None without local pathways (global_only)
    attention: Tensor


class GlobalPathway(nn.Module):
    """Global pathway (framework.png, top): coarse restoration of the whole scaled-down image I_4.

    Encoder-decoder -> decoder features F -> Spatial Attention -> A_g; the skip branch F is
    gated by A_g and one more block gives B_g (residual over I_4; the last convolution starts
    at 0, so B_g = I_4 at initialisation).
    """

    def __init__(
        self, widths: tuple[int, ...], blocks: int, cue_channels: int, hands_on: bool = True
    ) -> None:
        super().__init__()
        self.stem = conv3x3(3, widths[0])
        self.encoder = Encoder(widths, blocks)
        self.decoder = Decoder(widths, blocks, norm=True)
        self.attention = SpatialAttention()
        self.tail = nn.Sequential(ResBlock(widths[0]), zero_init(conv3x3(widths[0], 3)))
        self.cue = nn.Conv2d(widths[0], cue_channels, 1) if hands_on else None

    def forward(self, x: Tensor) -> GlobalOut:
        feats = self.encoder(self.stem(x))
        f, _ = self.decoder(feats, measure=True)  # whole image: its own statistics
        a = self.attention(f)
        b = x + self.tail(f * a)
        return GlobalOut(b=b, cue=self.cue(f) if self.cue is not None else None, attention=a)


@dataclass
class LocalOut:
    """Output of a local pathway over one region: B_i, the cue F_i for the next, and A_i."""

    b: Tensor
    cue: Tensor | None  # None for the last pathway: nothing follows it
    attention: Tensor | None  # A_i, from this pathway's own features (None without PAC)
    stats: list[NormStats]  # what its Patch Norm layers used


class LocalPathway(nn.Module):
    """Local pathway i (framework.png, middle): encoder -> E_i; PAC_i -> A_i and a gate on E_i
    and on every encoder skip (bilinearly up-sampled), so no feature reaches the decoder around
    the attention; decoder of Residual Blocks and Patch Norm -> F_i -> B_i (residual over I_i,
    the head starting at 0, so B_i = I_i at initialisation).

    Fully convolutional with a finite receptive field (`radius`), so it gives the same values
    on a patch with enough halo as on the whole image.
    """

    def __init__(
        self,
        widths: tuple[int, ...],
        blocks: int,
        cue_channels: int,
        n_cues: int,
        n_attention_cues: int,
        pac: bool,
        hands_on: bool,
    ) -> None:
        super().__init__()
        self.n_cues = n_cues
        self.stem = conv3x3(3 + n_cues * cue_channels, widths[0])
        self.encoder = Encoder(widths, blocks)
        self.pac = PAC(widths[-1], n_attention_cues) if pac else None
        self.decoder = Decoder(widths, blocks, norm=True)
        self.head = zero_init(conv3x3(widths[0], 3))
        self.cue = nn.Conv2d(widths[0], cue_channels, 1) if hands_on else None
        self.bottleneck_factor = 2 ** (len(widths) - 1)

    def forward(
        self,
        x: Tensor,
        cues: list[Tensor],
        attention_cues: list[Tensor],
        stats: list[NormStats] | None,
        measure: bool = False,
    ) -> LocalOut:
        """`cues` (F_g, F_{i-1}) lie on x's grid, `attention_cues` (A_g, A_{i-1}) on E_i's.

        Patch Norm uses `stats`, or with `measure` (x is the whole image) measures its own.
        """
        if len(cues) != self.n_cues:
            raise ValueError(f"local pathway expects {self.n_cues} feature cues, got {len(cues)}")
        feats = self.encoder(self.stem(torch.cat([x, *cues], dim=1)))
        a = None
        if self.pac is not None:
            a, gate = self.pac(feats[-1], attention_cues)
            n = len(feats)
            for i in range(n):  # one level at a time: an ungated map is freed as it is replaced
                feats[i] = feats[i] * upsample(gate, 2 ** (n - 1 - i))
        f, used = self.decoder(feats, stats=stats, measure=measure)
        cue = self.cue(f) if self.cue is not None else None
        return LocalOut(b=x + self.head(f), cue=cue, attention=a, stats=used)

    def radius(self) -> int:
        """Receptive radius in this pathway's pixels (an upper bound, conservative)."""
        r = 1 + self.encoder.radius() + self.decoder.radius() + 1
        if self.pac is not None:  # the gate, and its up-sampling to the skips (1 px on E's grid)
            r += (PAC.radius + 1) * self.bottleneck_factor
        return r
