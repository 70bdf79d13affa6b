"""Small building blocks shared by the pathways: residual blocks and U-Net halves.

Each block knows its receptive radius (`radius`, in pixels of the level it starts at), so the
patch halo needed for exact patch-streamed inference is computed, not guessed.
"""

from __future__ import annotations

from torch import Tensor, nn

from .patchnorm import NormStats, PatchNorm
from .resample import upsample

__all__ = ["conv3x3", "ResBlock", "Up", "Encoder", "Decoder", "zero_init"]


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


def zero_init(conv: nn.Conv2d) -> nn.Conv2d:
    """A convolution that starts at 0: a residual head over it starts as the identity."""
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class Up(nn.Module):
    """Learned 2x up-sampling: a 1x1 convolution, then bilinear resizing.

    A stride-2 transposed convolution has four sub-kernels that differ, so it paints a 2-px
    pattern at every level (a checkerboard); resizing cannot. The 1x1 convolution before the
    resize is the same map as after it, at a quarter of the cost. Each output pixel reaches
    one coarse pixel around it (radius 2 at the finer level).
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return upsample(self.proj(x), 2)


class ResBlock(nn.Module):
    """Residual Block (framework.png grey, LP.png "ResBlock"): x + conv(GELU(conv(x)))."""

    radius = 2

    def __init__(self, channels: int, out_bias: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(channels, channels),
            nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=out_bias),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def res_blocks(channels: int, n: int, out_bias: bool = True) -> nn.Sequential:
    """`n` ResBlocks; `out_bias=False` drops the last one's output bias, which a
    normalisation right after it would subtract again (a parameter that never learns)."""
    return nn.Sequential(*(ResBlock(channels, out_bias or i < n - 1) for i in range(n)))


class Encoder(nn.Module):
    """U-Net encoder: residual blocks per level, stride-2 convolutions between levels."""

    def __init__(self, widths: tuple[int, ...], blocks: int) -> None:
        super().__init__()
        self.levels = nn.ModuleList(res_blocks(w, blocks) for w in widths)
        self.downs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 2, stride=2) for i in range(len(widths) - 1)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        """Features of every level, finest first; the last is the bottleneck E."""
        feats = []
        for i, level in enumerate(self.levels):
            if i:
                x = self.downs[i - 1](x)
            x = level(x)
            feats.append(x)
        return feats

    def radius(self) -> int:
        blocks = len(self.levels[0])
        return sum(
            2**i * (ResBlock.radius * blocks + (2 if i else 0)) for i in range(len(self.levels))
        )


class Decoder(nn.Module):
    """U-Net decoder: alternating residual blocks and (optional) Patch Norm, coarsest first."""

    def __init__(self, widths: tuple[int, ...], blocks: int, norm: bool) -> None:
        super().__init__()
        self.levels = nn.ModuleList(res_blocks(w, blocks, out_bias=not norm) for w in widths)
        self.norms = nn.ModuleList(PatchNorm(w) for w in widths) if norm else None
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i]) for i in range(len(widths) - 1))

    def forward(
        self,
        feats: list[Tensor],
        stats: list[NormStats] | None = None,
        measure: bool = False,
    ) -> tuple[Tensor, list[NormStats]]:
        """Decode the encoder's `feats` (finest first, the bottleneck last); Patch Norm uses
        `stats` (one per level, finest first) or, with `measure`, the statistics of this very
        decoder (whole image).

        Consumes `feats`: each skip leaves the list as it is added, so it is freed there
        rather than held to the end (at 4K, the global pathway's peak fell by 55 MB).
        """
        measured: list[NormStats] = [None] * len(self.levels)  # type: ignore[list-item]
        x = feats.pop()
        for i in reversed(range(len(self.levels))):
            if i < len(self.levels) - 1:
                x = self.ups[i](x) + feats.pop()
            x = self.levels[i](x)
            if self.norms is not None:
                s = PatchNorm.measure(x) if measure else (stats[i] if stats else None)
                measured[i] = s
                x = self.norms[i](x, s)
        return x, measured

    def radius(self) -> int:
        blocks = len(self.levels[0])
        n = len(self.levels)
        return sum(2**i * (ResBlock.radius * blocks + (2 if i < n - 1 else 0)) for i in range(n))
