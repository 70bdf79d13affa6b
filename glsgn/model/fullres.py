"""Baseline: a single full-resolution pathway of about GLSGN's parameter count."""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from ..config import ModelConfig
from .blocks import Decoder, Encoder, conv3x3
from .glsgn import GLSGN, GLSGNOutput
from .resample import pad_to_multiple

__all__ = ["FullResNet", "fullres_widths"]


def _param_count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def fullres_widths(cfg: ModelConfig) -> tuple[int, ...]:
    """Widths (GLSGN's, scaled by one factor, multiples of 4) whose count is closest to GLSGN's."""
    target = _param_count(GLSGN(dataclasses.replace(cfg, arch="glsgn")))
    best, best_gap = cfg.widths, None
    for tenth in range(10, 81):
        widths = tuple(max(4, round(w * tenth / 10 / 4) * 4) for w in cfg.widths)
        gap = abs(_param_count(_UNet(widths, cfg.blocks)) - target)
        if best_gap is None or gap < best_gap:
            best, best_gap = widths, gap
    return best


class _UNet(nn.Module):
    def __init__(self, widths: tuple[int, ...], blocks: int) -> None:
        super().__init__()
        self.stem = conv3x3(3, widths[0])
        self.encoder = Encoder(widths, blocks)
        self.decoder = Decoder(widths, blocks, norm=False)
        self.head = conv3x3(widths[0], 3)

    def forward(self, x: Tensor) -> Tensor:
        feats = self.encoder(self.stem(x))
        f, _ = self.decoder(feats[-1], feats)
        return x + self.head(f)


class FullResNet(nn.Module):
    """Single-pathway U-Net on the full-resolution image: no global view, no pyramid.

    The `fullres` baseline of the ablations, and the reference for GLSGN's cost at 4K and 8K.
    Fully convolutional, so `glsgn.restore` streams it in patches like the local pathways.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        if cfg.arch != "fullres":
            raise ValueError(f"model.arch: FullResNet builds arch 'fullres', got {cfg.arch!r}")
        self.cfg = cfg
        self.widths = cfg.fullres_widths or fullres_widths(cfg)
        self.net = _UNet(self.widths, cfg.blocks)
        self.pad_multiple = cfg.align

    def radius(self) -> int:
        return 1 + self.net.encoder.radius() + self.net.decoder.radius() + 1

    def forward(
        self, x: Tensor, global_view: Tensor | None = None, region: object | None = None
    ) -> GLSGNOutput:
        """`global_view` and `region` (GLSGN's training form) are accepted and unused: this
        network sees only the crop."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"FullResNet expects (N, 3, H, W) images, got shape {tuple(x.shape)}")
        xp, (h, w) = pad_to_multiple(x, self.pad_multiple)
        return GLSGNOutput(b_out=self.net(xp)[..., :h, :w])
