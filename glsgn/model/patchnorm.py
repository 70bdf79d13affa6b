"""Patch Norm (framework.png, the blue layers of every local decoder)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["NormStats", "PatchNorm"]

NormStats = tuple[Tensor, Tensor]  # per-sample, per-channel (mean, variance), shape (N, C, 1, 1)


class PatchNorm(nn.Module):
    """Patch Norm: normalise a patch with statistics of the whole image, never the patch's own.

    Before its patches, each local pathway runs once on the whole image at the global view's
    scale (the reference pass); each Patch Norm layer measures its per-channel mean and variance
    there (`measure`), and every patch is normalised with those same numbers. The restoring
    intensity therefore cannot jump from one patch to the next, and a patch's output does not
    depend on how the image was cut. `stats=None` applies the affine only.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    @staticmethod
    def measure(x: Tensor) -> NormStats:
        """Statistics of a whole feature map (the global pathway's), per sample and channel."""
        var, mean = torch.var_mean(x.float(), dim=(-2, -1), keepdim=True, correction=0)
        return mean, var

    def forward(self, x: Tensor, stats: NormStats | None) -> Tensor:
        if stats is None:
            return x * self.weight + self.bias
        # (x - mean) / std * weight + bias as one multiply-add over the image-sized map:
        # the per-channel scale and shift are folded first, on (N, C, 1, 1) tensors.
        mean, var = stats
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))
