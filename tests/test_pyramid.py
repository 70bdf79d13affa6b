"""The Laplacian-pyramid fusion (LP.png) with ideal pathway outputs: B_out is the target while
it uses the global pathway's band, and the loss never pushes that band's mask towards 0."""

from __future__ import annotations

import pytest
import torch

from glsgn.model.pyramid import PyramidFusion, high_band
from glsgn.model.resample import Region, downscale

FACTORS = [1, 2, 4]


def _ideal(y: torch.Tensor, global_factor: int = 4):
    """Every B_k and B_g equal to the target at its scale."""
    r = Region.whole(*y.shape[-2:])
    bs = [(downscale(y, f), r.coarser(f)) for f in FACTORS]
    return bs, (downscale(y, global_factor), r.coarser(global_factor))


def _fusion(coarse_logit: float | None = None, unit_gains: bool = True) -> PyramidFusion:
    """A fusion with random mask networks; `coarse_logit` fixes m_n = sigmoid(coarse_logit),
    `unit_gains` the gains m_1..m_{n-1} at 1 (every band as its pathway made it)."""
    fusion = PyramidFusion(len(FACTORS), channels=4, blocks=1)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in fusion.parameters():
            p.add_(0.3 * torch.randn_like(p))
        lasts = [(fusion.head[-1], coarse_logit)] if coarse_logit is not None else []
        lasts += [(r.body[-1], 0.0) for r in fusion.refine] if unit_gains else []
        for conv, logit in lasts:
            conv.weight.zero_()
            conv.bias.fill_(logit)
    return fusion


@pytest.mark.parametrize("coarse_logit", [30.0, 0.0, None])  # m_n = 1, 1/2, a random map
def test_ideal_outputs_fuse_to_the_target_with_the_global_band_in_use(coarse_logit):
    y = torch.rand(1, 3, 64, 96)
    fusion = _fusion(coarse_logit)
    with torch.no_grad():
        out = fusion(*_ideal(y))
    m_n = out.masks[-1]
    if coarse_logit == 30.0:
        assert m_n.min() > 1 - 1e-6  # B_out is made with B_g's band, not B_3's
    assert (out.b - y).abs().max() <= 1e-6


def test_at_ideal_outputs_the_loss_does_not_push_the_global_mask_down():
    """The defect this guards against: adding B_g's band on top of B_n's own counted that level
    twice, so the loss at ideal outputs grew with m_n (L1 0 at m_n = 0, 0.036 at m_n = 1) and
    training switched the global pathway's band off."""
    y = torch.rand(1, 3, 64, 96)
    for coarse_logit in (-3.0, 0.0, 3.0):
        fusion = _fusion(coarse_logit)
        out = fusion(*_ideal(y))
        out.masks[-1].retain_grad()
        torch.nn.functional.l1_loss(out.b, y).backward()
        assert out.masks[-1].grad.abs().max() <= 1e-6


def test_the_loss_pushes_the_global_mask_towards_the_better_band():
    """B_3 with noise in its detail, B_g ideal: gradient descent raises m_n (uses more of B_g's
    band) at most pixels and on the whole; the other way round it lowers it."""
    y = torch.rand(1, 3, 64, 96)
    bs, bg = _ideal(y)
    b3, r3 = bs[-1]
    noise = 0.2 * high_band(torch.randn_like(b3), r3)
    for bs_, bg_, sign in (
        (bs[:-1] + [(b3 + noise, r3)], bg, -1),  # B_3 is worse: descent raises m_n
        (bs, (bg[0] + noise, bg[1]), 1),  # B_g is worse: descent lowers m_n
    ):
        fusion = _fusion(0.0)
        out = fusion(bs_, bg_)
        out.masks[-1].retain_grad()
        (out.b - y).square().mean().backward()
        g = out.masks[-1].grad
        assert (sign * g > 0).float().mean() > 0.75 and (sign * g).mean() > 0


def test_gated_bands_rebuild_b_out():
    """B_out is l + h'_n, up-sampled, + h'_{n-1} ... + h'_1, with h'_k = m_k h_k below n."""
    from glsgn.model.resample import resample

    fusion = _fusion(None, unit_gains=False)
    bs, bg = _ideal(torch.rand(1, 3, 64, 96))
    with torch.no_grad():
        out = fusion(bs, bg)
    rebuilt = out.low + out.details[-1]
    for k in reversed(range(len(FACTORS) - 1)):
        rebuilt = resample(rebuilt, bs[k + 1][1], bs[k][1]) + out.details[k]
        torch.testing.assert_close(out.details[k], out.masks[k] * out.bands[k])
    torch.testing.assert_close(rebuilt, out.b)
    assert (out.masks[0] - 1).abs().max() > 1e-2  # the gains were not all 1
