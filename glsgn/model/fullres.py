"""Baselines: a single full-resolution pathway of GLSGN's parameter count (`fullres`) or of
its multiply-accumulates per pixel (`fullres_flops`)."""

from __future__ import annotations

import dataclasses
import functools

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from .blocks import Decoder, Encoder, conv3x3, zero_init
from .glsgn import GLSGN, GLSGNOutput
from .resample import Region, pad_to_multiple
from .traversal import Canvas, Step, Tiling, level, log, part, plane_bytes

__all__ = ["FullResNet", "fullres_widths", "param_count", "flops_per_pixel"]

_PROBE = 512  # side of the square image the FLOPs per pixel are counted on


def param_count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def flops_per_pixel(model: nn.Module, size: int = _PROBE) -> float:
    """FLOPs per input pixel of a whole-image forward (torch.utils.flop_counter: convolutions
    and matrix products), counted on the meta device: shapes only, no arithmetic."""
    # imported here: it pulls in torch._decomp and triton, ~0.1 GB that `glsgn restore` never needs
    from torch.utils.flop_counter import FlopCounterMode

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
        f, _ = self.decoder(feats)
        return x + self.head(f)


class FullResNet(nn.Module):
    """Single-pathway U-Net on the full-resolution image: no global view, no pyramid.

    The `fullres` and `fullres_flops` baselines of the ablations, and the reference for
    GLSGN's cost at 4K and 8K. Fully convolutional: a one-step plan that `glsgn.restore`
    streams in patches like GLSGN's.
    """

    whole_image_fraction = 0.0  # nothing runs on the whole image at once

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.arch != "fullres":
            raise ValueError(f"model.arch: FullResNet builds arch 'fullres', got {cfg.arch!r}")
        self.cfg = cfg
        self.widths = cfg.fullres_widths or fullres_widths(cfg)
        self.net = _UNet(self.widths, cfg.blocks)
        self.pad_multiple = cfg.align
        self.plan = [Step("fullres", 1, cfg.align, self.radius(), {"out": (3, 1, False)})]

    def radius(self) -> int:
        return 1 + self.net.encoder.radius() + self.net.decoder.radius() + 1

    def buffer_bytes(self, h: int, w: int) -> int:
        """float32 bytes of the image-sized maps a restore of a padded h x w image keeps."""
        return plane_bytes(self.plan, h, w)

    def traverse(self, x: Tensor, region: Region, tiling: Tiling) -> Tensor:
        """The network tile by tile over `region` (what `x` covers, host or device)."""
        dev = next(self.parameters()).device
        step = self.plan[0]
        out = Canvas.planes(step, region, x, dev)["out"]
        tiling.start([(step, region)])
        for tile, ext in tiling.tiles(step, region):
            b = self.net(part(x, region, ext).to(dev, non_blocking=True))
            out.put(tile, part(b, ext, tile))
        tiling.close()
        return out.t

    def forward(
        self, x: Tensor, global_view: Tensor | None = None, region: object | None = None
    ) -> GLSGNOutput:
        """`global_view` and `region` (GLSGN's training form) are accepted and unused: this
        network sees only the crop."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"FullResNet expects (N, 3, H, W) images, got shape {tuple(x.shape)}")
        xp, (h, w) = pad_to_multiple(x, self.pad_multiple)
        b = self.traverse(xp, Region.whole(*xp.shape[-2:]), Tiling())
        return GLSGNOutput(b_out=b[..., :h, :w])

    def stream(
        self, xp: Tensor, patch: int, halo: int | None = None, progress: bool = False
    ) -> Tensor:
        """B_out of padded image `xp` (1, 3, H, W), patch by patch (see `GLSGN.stream`)."""
        hl = self.plan[0].halo(halo)
        log.log(
            level(progress),
            "restore fullres on %s: padded to %dx%d, patch %d, halo %d",
            next(self.parameters()).device,
            xp.shape[-1],
            xp.shape[-2],
            patch,
            hl,
        )
        return self.traverse(xp, Region.whole(*xp.shape[-2:]), Tiling(patch, halo, progress))
