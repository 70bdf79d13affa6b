"""Baselines: a single full-resolution pathway of GLSGN's parameter count (`fullres`) or of
its multiply-accumulates per pixel (`fullres_flops`)."""

from __future__ import annotations

import dataclasses
import functools

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from ..config import ModelConfig
from .blocks import Decoder, Encoder, conv3x3, zero_init
from .glsgn import GLSGN, GLSGNOutput
from .resample import pad_to_multiple

__all__ = ["FullResNet", "fullres_widths", "param_count", "flops_per_pixel"]

_PROBE = 512  # side of the square image the FLOPs per pixel are counted on


def param_count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def flops_per_pixel(model: nn.Module, size: int = _PROBE) -> float:
    """FLOPs per input pixel of a whole-image forward (torch.utils.flop_counter: convolutions
    and matrix products), counted on the meta device: shapes only, no arithmetic."""
    meta = model if next(model.parameters()).is_meta else _on_meta(model)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty(1, 3, size, size, device="meta"))
    return counter.get_total_flops() / size**2


def _on_meta(model: nn.Module) -> nn.Module:
    with torch.device("meta"):
        return type(model)(model.cfg)


@functools.lru_cache(maxsize=32)
def fullres_widths(cfg: ModelConfig) -> tuple[int, ...]:
    """Widths (GLSGN's, scaled by one factor, even) whose parameter count
    (`fullres_match: params`) or FLOPs per pixel (`macs`) come closest to GLSGN's."""

    def scaled(s: float) -> tuple[int, ...]:
        return tuple(max(2, round(w * s / 2) * 2) for w in cfg.widths)

    with torch.device("meta"):
        measure = param_count if cfg.fullres_match == "params" else flops_per_pixel
        target = measure(GLSGN(dataclasses.replace(cfg, arch="glsgn")))
        # Both grow about as the square of the widths: start there, then search around it.
        s0 = (target / measure(_UNet(cfg.widths, cfg.blocks))) ** 0.5
        candidates = sorted({scaled(s0 * (0.8 + 0.01 * i)) for i in range(41)})
        return min(candidates, key=lambda w: abs(measure(_UNet(w, cfg.blocks)) - target))


class _UNet(nn.Module):
    def __init__(self, widths: tuple[int, ...], blocks: int) -> None:
        super().__init__()
        self.stem = conv3x3(3, widths[0])
        self.encoder = Encoder(widths, blocks)
        self.decoder = Decoder(widths, blocks, norm=False)
        self.head = zero_init(conv3x3(widths[0], 3))  # the identity at initialisation, as GLSGN

    def forward(self, x: Tensor) -> Tensor:
        feats = self.encoder(self.stem(x))
        f, _ = self.decoder(feats[-1], feats)
        return x + self.head(f)


class FullResNet(nn.Module):
    """Single-pathway U-Net on the full-resolution image: no global view, no pyramid.

    The `fullres` and `fullres_flops` baselines of the ablations, and the reference for
    GLSGN's cost at 4K and 8K.
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
