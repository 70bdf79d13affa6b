from __future__ import annotations

import dataclasses

import pytest
import torch

from glsgn.config import Params
from glsgn.model import GLSGN, FullResNet, build_model
from glsgn.model.blocks import Up
from glsgn.model.fullres import flops_per_pixel, param_count
from glsgn.model.pac import PAC
from glsgn.model.resample import Region, downscale, pad_to_multiple
from glsgn.variants import variant_configs, variants

from .conftest import TINY, VARIANTS, build

SIZES = [(1, 1), (5, 7), (37, 53), (96, 64), (64, 150)]  # tiny, odd, portrait, landscape


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("hw", SIZES)
def test_output_shapes(name, hw):
    model = build(VARIANTS[name]).eval()
    x = torch.rand(2, 3, *hw)
    with torch.no_grad():
        out = model(x)
    assert out.b_out.shape == x.shape
    assert torch.isfinite(out.b_out).all()
    if isinstance(model, GLSGN) and model.geometry.factors:
        assert len(out.b_local) == len(model.geometry.factors)
        for b, f in zip(out.b_local, model.geometry.factors, strict=True):
            assert b.shape[-2:] == (-(-hw[0] // f), -(-hw[1] // f))


def test_full_model_exposes_every_intermediate():
    model = build(TINY).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 96))
    assert out.b_global.shape == (1, 3, 16, 24)  # global view: scale 1/4
    assert out.a_global.shape == (1, 1, 16, 24) and 0 < out.a_global.min() <= out.a_global.max() < 1
    assert [tuple(b.shape[-2:]) for b in out.b_local] == [(64, 96), (32, 48), (16, 24)]
    assert [tuple(a.shape[-2:]) for a in out.a_local] == [(16, 24), (8, 12), (4, 6)]  # E_i grid
    assert len(out.bands) == len(out.details) == len(out.masks) == 3
    assert 0 < out.masks[-1].min() and out.masks[-1].max() < 1  # m_n: B_g's share of h_n
    for m in out.masks[:-1]:  # gains on h_1, h_2
        assert 0 < m.min() and m.max() < 2


def test_ablation_switches_remove_their_blocks():
    parts = {
        name: {type(m).__name__ for m in build(cfg).modules()} for name, cfg in VARIANTS.items()
    }
    assert "PAC" in parts["full"] and "PAC" not in parts["no_pac"]
    assert "PyramidFusion" in parts["full"] and "PyramidFusion" not in parts["no_pyramid"]
    assert "GlobalPathway" not in parts["local_only"] and "LocalPathway" in parts["local_only"]
    assert "LocalPathway" not in parts["global_only"] and "GlobalPathway" in parts["global_only"]
    assert parts["fullres"].isdisjoint({"GlobalPathway", "LocalPathway", "PyramidFusion"})


@pytest.mark.parametrize(
    "cfg", [TINY, pytest.param(Params().model, marks=pytest.mark.slow)], ids=["tiny", "default"]
)
def test_fullres_baselines_match_glsgn_in_parameters_or_in_flops(cfg):
    glsgn = build_model(cfg)
    by_params = build_model(dataclasses.replace(cfg, arch="fullres"))
    by_flops = build_model(dataclasses.replace(cfg, arch="fullres", fullres_match="macs"))
    g, p = param_count(glsgn), param_count(by_params)
    assert abs(p - g) / g < 0.05, (p, g)
    g, f = flops_per_pixel(glsgn), flops_per_pixel(by_flops)
    assert abs(f - g) / g < 0.05, (f, g)
    # ... and each is far from the other measure: the two baselines answer different questions
    assert flops_per_pixel(by_params) > 1.5 * flops_per_pixel(glsgn)
    assert param_count(by_flops) < 0.7 * param_count(glsgn)


def test_flops_per_pixel_counts_convolutions():
    """Against a hand count: a 3x3 convolution costs 2 * 9 * cin * cout FLOPs per pixel."""
    with torch.device("meta"):
        meta = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1))
    assert flops_per_pixel(meta, size=32) == 2 * 9 * 3 * 8


@pytest.mark.parametrize("name", list(variants()))
def test_every_variant_starts_as_the_identity(name):
    """Every pathway output is its input at its scale, and so is B_out (zero-initialised
    heads, gains of 1, and B_g's band equal to B_n's at initialisation)."""
    mcfg, _ = variant_configs(Params(model=TINY), name)
    model = build_model(mcfg).eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
    assert (out.b_out - x).abs().max() <= 1e-6
    for b, f in zip(out.b_local, out.geometry.factors, strict=True):
        assert (b - downscale(x, f)).abs().max() <= 1e-6
    if out.b_global is not None:
        assert (out.b_global - downscale(x, model.geometry.global_factor)).abs().max() <= 1e-6


def test_learned_upsampling_paints_no_checkerboard():
    """A constant map stays constant through `Up` at any weights; a stride-2 transposed
    convolution (what the decoders used before) paints a 2-px pattern on it."""
    up = Up(8, 4)
    torch.nn.init.normal_(up.proj.weight)
    const = torch.ones(1, 8, 8, 8)
    y = up(const)
    assert y.shape == (1, 4, 16, 16) and (y - y[..., :1, :1]).abs().max() <= 1e-5
    transposed = torch.nn.ConvTranspose2d(8, 4, 2, stride=2)
    z = transposed(const)
    assert (z - z[..., :1, :1]).abs().max() > 1e-2


def test_trained_model_on_a_constant_image_is_constant_away_from_the_border():
    """Every pathway, PAC gate, Patch Norm and the fusion with weights off their
    initialisation: a flat input gives a flat output wherever the border is out of reach,
    so nothing in the network paints a periodic pattern of its own."""
    model = build(TINY).eval()
    x = torch.full((1, 3, 448, 448), 0.3)
    with torch.no_grad():
        y = model(x).b_out[0, :, 208:240, 208:240]
    assert (y - y[:, :1, :1]).abs().max() <= 1e-5
    assert (y - 0.3).abs().max() > 1e-3  # and the network did something


def test_pac_attention_comes_from_the_pathways_own_features():
    """A_i does not see the cues A_g and A_{i-1} (copying them cannot meet the attention
    term); the gate does."""
    pac = PAC(8, 2)
    e = torch.rand(1, 8, 6, 6)
    a1, g1 = pac(e, [torch.zeros(1, 1, 6, 6), torch.zeros(1, 1, 6, 6)])
    a2, g2 = pac(e, [torch.ones(1, 1, 6, 6), torch.rand(1, 1, 6, 6)])
    torch.testing.assert_close(a1, a2, rtol=0, atol=0)
    assert (g1 - g2).abs().max() > 1e-3


def test_pac_gates_the_skips_too():
    """With PAC's gate closed, nothing of the input reaches the local decoder: not through the
    bottleneck, and not around it through the U-Net skips."""
    model = build(TINY).eval()
    pathway = model.local_pathways[0]
    torch.nn.init.constant_(pathway.pac.mix.bias, -60.0)  # gate = sigmoid(-60) ~ 1e-26
    cues = [torch.rand(1, TINY.cue_channels, 32, 32) for _ in range(pathway.n_cues)]
    att = [torch.rand(1, 1, 8, 8) for _ in range(pathway.pac.n_cues)]
    stats = [(torch.zeros(1, w, 1, 1), torch.ones(1, w, 1, 1)) for w in TINY.widths]
    with torch.no_grad():
        xs = [torch.rand(1, 3, 32, 32) for _ in range(2)]
        residuals = [pathway(x, cues, att, stats).b - x for x in xs]
    torch.testing.assert_close(residuals[0], residuals[1], rtol=0, atol=1e-6)
    pathway.pac = None  # and without PAC the input does reach it
    with torch.no_grad():
        residuals = [pathway(x, cues, [], stats).b - x for x in xs]
    assert (residuals[0] - residuals[1]).abs().max() > 1e-3


def test_global_attention_has_no_border_frame():
    """A_g of flat features is flat up to the border (the 7x7 convolution pads by
    replication, so the edge does not read as "nothing here")."""
    model = build(TINY).eval()
    f = torch.ones(1, 4, 20, 20)
    with torch.no_grad():
        a = model.global_pathway.attention(f)
    assert (a - a[..., 10:11, 10:11]).abs().max() <= 1e-6


def _silent(model):
    return [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]


def test_gradients_of_b_out_reach_every_pathway():
    """Every pathway, PAC, Patch Norm and the fusion take part in B_out."""
    model = build(TINY)
    model(torch.rand(1, 3, 64, 64)).b_out.square().mean().backward()
    assert not _silent(model)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_parameter_gets_a_gradient_from_the_outputs(name):
    """With the per-pathway outputs that training supervises, no parameter is dead weight."""
    model = build(VARIANTS[name])
    out = model(torch.rand(1, 3, 64, 64))
    parts = [out.b_out, *out.b_local] + ([out.b_global] if out.b_global is not None else [])
    sum(p.square().mean() for p in parts).backward()
    assert not _silent(model)


def test_training_form_with_whole_region_equals_whole_image_forward():
    model = build(TINY).eval()
    x = torch.rand(1, 3, 64, 96)
    region = Region.whole(64, 96)
    with torch.no_grad():
        whole = model(x)
        crop = model(x, global_view=downscale(x, model.geometry.global_factor), region=region)
    torch.testing.assert_close(crop.b_out, whole.b_out, rtol=0, atol=1e-6)


def test_training_form_crop_sees_the_global_view_of_the_whole_image():
    """A crop's output depends on the rest of the image only through the global view."""
    model = build(TINY).eval()
    x = torch.rand(1, 3, 64, 128)
    region = Region((64, 128), (0, 64, 0, 64))
    crop = x[..., :, :64]
    other = x.clone()
    other[..., :, 64:] = 0  # change what lies outside the crop
    with torch.no_grad():
        a = model(crop, global_view=downscale(x, 4), region=region).b_out
        b = model(crop, global_view=downscale(other, 4), region=region).b_out
        c = model(crop, global_view=downscale(x, 4), region=region).b_out
    assert (a - b).abs().max() > 1e-4
    torch.testing.assert_close(a, c, rtol=0, atol=0)


def test_training_form_rejects_unaligned_crops():
    model = build(TINY)
    x = torch.rand(1, 3, 30, 30)
    with pytest.raises(ValueError, match="aligned"):
        model(x, global_view=torch.rand(1, 3, 16, 16), region=Region((64, 64), (2, 32, 2, 32)))
    with pytest.raises(ValueError, match="without region"):
        model(x, global_view=torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.rand(3, 32, 32))


@pytest.mark.parametrize("k", [0, 1, 2])
def test_local_receptive_radius_is_an_upper_bound(k):
    """Perturb one input pixel: nothing changes farther away than the stated radius."""
    model = build(TINY).eval()
    pathway = model.local_pathways[k]
    r = pathway.radius()
    size = 2 * r + 64
    x = torch.rand(1, 3, size, size)
    cues = [torch.rand(1, TINY.cue_channels, size, size) for _ in range(pathway.n_cues)]
    e = size // model.geometry.bottleneck
    att = [torch.rand(1, 1, e, e) for _ in range(pathway.pac.n_cues)] if pathway.pac else []
    stats = [(torch.zeros(1, w, 1, 1), torch.ones(1, w, 1, 1)) for w in TINY.widths]
    with torch.no_grad():
        y0 = pathway(x, cues, att, stats).b
        c = size // 2
        x[..., c, c] += 1.0
        y1 = pathway(x, cues, att, stats).b
    changed = (y1 - y0).abs().amax(dim=(0, 1)) > 0
    ys, xs = torch.nonzero(changed, as_tuple=True)
    assert len(ys) > 0
    reach = max((ys - c).abs().max().item(), (xs - c).abs().max().item())
    assert reach <= r, (reach, r)
    assert reach >= r // 3  # the bound is not wildly loose


def test_pac_needs_its_cues():
    pac = PAC(8, 2)
    with pytest.raises(ValueError, match="2 attention cues"):
        pac(torch.rand(1, 8, 4, 4), [torch.rand(1, 1, 4, 4)])


def test_build_model_dispatches_on_arch():
    assert isinstance(build(TINY), GLSGN)
    assert isinstance(build_model(dataclasses.replace(TINY, arch="fullres")), FullResNet)


def test_pad_to_multiple_replicates_edges():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    y, hw = pad_to_multiple(x, 4)
    assert hw == (2, 3) and y.shape == (1, 1, 4, 4)
    assert y[0, 0, 3, 3] == x[0, 0, 1, 2] and y[0, 0, 0, 3] == x[0, 0, 0, 2]
