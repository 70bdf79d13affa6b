"""Patch-streamed restoration equals whole-image processing: no seams, whatever the grid."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from glsgn.config import parse_memory
from glsgn.model.resample import Region
from glsgn.restore import all_finite, choose_patch, min_side, restore, tiles

from .conftest import TINY, VARIANTS, build


def _err(y, ref) -> float:
    """Largest difference, relative to the output's scale where that exceeds 1 (a perturbed
    model on a tiny image can output 1e7: float32 rounding is then ~1e-7 of that)."""
    return float((y - ref).abs().max() / max(1.0, float(ref.abs().max())))


def _whole(model, x):
    """The whole-image forward in the memory layout restore runs models in (channels_last):
    another layout rounds differently (~1e-7 relative, amplified by a deep perturbed net).
    An image with a side below `min_side` is mirrored out as restore does (bottom and right),
    and the output cropped back."""
    cl = torch.channels_last
    h, w = x.shape[-2:]
    least = min_side(model)
    xp = x[None]
    if h < least or w < least:  # symmetric padding, as often as it takes: numpy's
        pad = ((0, 0), (0, 0), (0, max(0, least - h)), (0, max(0, least - w)))
        xp = torch.from_numpy(np.pad(xp.numpy(), pad, mode="symmetric"))
    with torch.no_grad():
        model.to(memory_format=cl)
        out = model(xp.to(memory_format=cl)).b_out[0, :, :h, :w]
        model.to(memory_format=torch.contiguous_format)
        return out


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("patch", [pytest.param(16, marks=pytest.mark.slow), 32, 48])
def test_streamed_equals_whole_image(name, patch):
    model = build(VARIANTS[name]).eval()
    x = torch.rand(3, 83, 141)  # odd sizes: padding, partial patches at both edges
    ref = _whole(model, x)
    y = restore(model, x, patch_size=patch, progress=False)
    assert y.shape == x.shape
    assert _err(y, ref) <= 1e-5


@pytest.mark.parametrize("hw", [(1, 1), (9, 5), (150, 40), (40, 200), (300, 48)])
def test_any_size_including_smaller_than_a_patch(hw):
    model = build(TINY).eval()
    x = torch.rand(3, *hw)
    y = restore(model, x, patch_size=16, progress=False)
    assert y.shape == x.shape
    assert _err(y, _whole(model, x)) <= 1e-5


def test_tiny_images_come_out_finite_and_near_the_input():
    """Below a few cells of the coarsest grid, Patch Norm's reference statistics have almost
    no variance: unpadded, a 16x16 image came out at 1e6 and sizes up to 47 px above 4. Every
    size from 1 to 64 px, square and not, stays bounded (|y| < 8; about 2 at 128 px) and
    within four times the mean deviation from its input that a 128-px image gets, for a model
    moved off its initialisation (far from the input at any size; a few-pixel image is what it
    treats worst)."""
    model = build(TINY).eval()
    g = torch.Generator().manual_seed(0)
    big = torch.rand(3, 128, 128, generator=g)
    bound = 4 * float((restore(model, big) - big).abs().mean())
    for s in range(1, 65):
        for hw in ((s, s), (s, 65 - s)):
            x = torch.rand(3, *hw, generator=g)
            y = restore(model, x)
            assert torch.isfinite(y).all() and y.abs().max() < 8, (hw, float(y.abs().max()))
            assert float((y - x).abs().mean()) <= bound, hw


@pytest.mark.parametrize(
    "cfg, hw, patch",
    [
        # local_only: the reference passes still need the global view's alignment
        (dataclasses.replace(TINY, global_pathway=False, local_scales=(1.0,)), (37, 41), 16),
        (dataclasses.replace(TINY, global_pathway=False, global_scale=8), (40, 40), 16),
        (
            dataclasses.replace(TINY, widths=(4,), global_pathway=False, local_scales=(1.0,)),
            (1, 1),
            4,
        ),
        # a large scale jump with a small receptive field: the cue needs its own halo
        (
            dataclasses.replace(
                TINY, widths=(16,), blocks=0, pac=False, local_scales=(1.0, 0.125), patch_size=6
            ),
            (45, 45),
            6,
        ),
        (
            dataclasses.replace(
                TINY, widths=(4,), global_scale=2, local_scales=(1.0, 1 / 64), patch_size=8
            ),
            (70, 90),
            8,
        ),
        (dataclasses.replace(TINY, widths=(4, 8, 16, 32), blocks=2, global_scale=8), (50, 70), 16),
    ],
)
def test_streamed_equals_whole_for_unusual_configs(cfg, hw, patch):
    model = build(cfg).eval()
    x = torch.rand(3, *hw)
    y = restore(model, x, patch_size=patch, progress=False)
    assert _err(y, _whole(model, x)) <= 1e-5


def test_a_streamed_restore_keeps_only_the_maps_framework_png_hands_on(monkeypatch):
    """Image-sized memory of a streamed restore: B_1..B_3, F_1 and F_2 on the next pathway's
    grid and A_1..A_3, filled tile by tile; no B_out of its own (written over B_1) and no
    whole downscaled copy of the input but the global view (I_2, I_3 are pooled per tile)."""
    import glsgn.model.glsgn as G

    model = build(TINY).eval()
    h, w = 512, 768  # every pathway's grid wider than a tile with its halo
    x = torch.rand(3, h, w)
    ref = _whole(model, x)
    allocated, pooled = [], []
    empty, downscale = torch.empty, G.downscale
    monkeypatch.setattr(
        torch, "empty", lambda *a, **k: allocated.append(empty(*a, **k)) or allocated[-1]
    )
    monkeypatch.setattr(G, "downscale", lambda x, f: pooled.append(downscale(x, f)) or pooled[-1])
    y = restore(model, x, patch_size=32)
    assert _err(y, ref) <= 1e-5  # B_1 overwritten only where no halo reads it

    fs, bf, c = (1, 2, 4), 2 ** (len(TINY.widths) - 1), TINY.cue_channels
    maps = sum(3 / f**2 for f in fs) + c / 2**2 + c / 4**2 + sum(1 / (f * bf) ** 2 for f in fs)
    assert sum(t.numel() for t in allocated) == maps * h * w
    assert any(y.untyped_storage().data_ptr() == t.untyped_storage().data_ptr() for t in allocated)
    gf = TINY.global_scale
    whole = [
        tuple(t.shape[-2:])
        for t in pooled
        if tuple(t.shape[-2:]) in {(h // 2, w // 2), (h // 4, w // 4)}
    ]
    assert whole == [(h // gf, w // gf)]  # the global view, once
    assert model.buffer_bytes(h, w) == 4 * h * w * (3 + maps + 3 / gf**2)


def test_halo_below_the_receptive_field_shows_seams():
    """The equality above is not luck: without the halo, patch borders differ."""
    model = build(TINY).eval()
    x = torch.rand(3, 96, 96)
    ref = _whole(model, x)
    assert (restore(model, x, patch_size=32, halo=0, progress=False) - ref).abs().max() > 1e-3


@pytest.mark.slow  # streamed equals whole at patch 32 and 48 (above), so they are equal
def test_patch_grid_does_not_change_the_output():
    model = build(TINY).eval()
    x = torch.rand(3, 100, 120)
    a = restore(model, x, patch_size=16, progress=False)
    b = restore(model, x, patch_size=64, progress=False)
    assert _err(a, b) <= 1e-5


def test_accepts_numpy_and_batched_input_and_keeps_training_mode():
    model = build(TINY).train()
    x = np.random.default_rng(0).random((1, 3, 40, 50), dtype=np.float32)
    y = restore(model, x, progress=False)
    assert y.shape == (3, 40, 50) and y.dtype == torch.float32
    assert model.training


@pytest.mark.parametrize(
    "image, kwargs, err, match",
    [
        (torch.rand(4, 32, 32), {}, ValueError, "shape"),
        (torch.rand(2, 3, 32, 32), {}, ValueError, "shape"),
        (torch.zeros(3, 32, 32, dtype=torch.uint8), {}, TypeError, "floating point"),
        (torch.full((3, 8, 8), float("nan")), {}, ValueError, "NaN"),
        ([[0.0]], {}, TypeError, "torch.Tensor or numpy"),
        (torch.rand(3, 8, 8), {"precision": "bf16"}, ValueError, "cuda only"),
        (torch.rand(3, 8, 8), {"precision": "int8"}, ValueError, "precision"),
        (torch.rand(3, 8, 8), {"patch_size": 30}, ValueError, "patch_size"),
        (torch.rand(3, 8, 8), {"halo": -2}, ValueError, "halo"),
    ],
)
def test_bad_input_is_a_clear_error(image, kwargs, err, match):
    with pytest.raises(err, match=match):
        restore(build(TINY), image, progress=False, **kwargs)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 3e38])
@pytest.mark.parametrize("where", [(0, 0, 0), (2, 63, 47), (1, 5, 30)])
def test_all_finite_agrees_with_isfinite_wherever_the_value_lies(value, where):
    x = torch.rand(3, 64, 48)
    x[where] = value
    for t in (x, x.permute(0, 2, 1), x[None].contiguous(memory_format=torch.channels_last)):
        assert all_finite(t) == bool(torch.isfinite(t).all())


def test_unknown_device_is_a_clear_error():
    with pytest.raises(ValueError, match="expected auto, cpu, cuda or cuda:N, got 'gpu'"):
        restore(build(TINY), torch.rand(3, 8, 8), device="gpu", progress=False)


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no CUDA device"):
        restore(build(TINY), torch.rand(3, 8, 8), device="cuda", progress=False)


def test_tiles_cover_the_grid_exactly_once():
    grid = Region.whole(70, 45)
    cover = torch.zeros(70, 45)
    for t in tiles(grid, 16):
        y0, y1, x0, x1 = t.box
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()


def test_auto_patch_on_the_cpu_is_the_model_patch_and_max_memory_is_for_cuda():
    model = build(TINY).eval()
    assert choose_patch(model, (64, 64), torch.device("cpu"), "fp32", "auto", None) == (32, True)
    x = torch.rand(3, 70, 90)
    assert (
        restore(model, x, patch_size="auto", progress=False) - _whole(model, x)
    ).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="max_memory: a device memory cap, for cuda only"):
        restore(model, x, max_memory="1GB", progress=False)


@pytest.mark.parametrize(
    "text, value",
    [
        ("2GB", 2 * 2**30),
        ("1.5g", int(1.5 * 2**30)),
        ("512MiB", 512 * 2**20),
        ("800M", 800 * 2**20),
        (4096, 4096),
        (None, None),
    ],
)
def test_memory_sizes_parse(text, value):
    assert parse_memory(text) == value


@pytest.mark.parametrize("text", ["2 parsecs", "-1GB", "0", "GB", True])
def test_bad_memory_sizes_are_clear_errors(text):
    with pytest.raises(ValueError, match="max_memory: expected"):
        parse_memory(text)


def test_bilinear_taps_are_built_once_per_geometry():
    from glsgn.model import resample as rs

    t = torch.rand(1, 2, 20, 30)
    src, dst = Region.whole(20, 30), Region((40, 60), (8, 24, 0, 32))
    rs.resample(t, src, dst)
    before = rs._taps.cache_info()
    y = rs.resample(t, src, dst)
    after = rs._taps.cache_info()
    assert after.misses == before.misses and after.hits == before.hits + 2
    whole = torch.nn.functional.interpolate(t, scale_factor=2, mode="bilinear")
    assert (y - whole[..., 8:24, 0:32]).abs().max() < 1e-6


@pytest.fixture
def no_tf32():
    """fp32 on CUDA means fp32: TF32 convolutions differ from the CPU by ~1e-3."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_matches_cpu(precision, no_tf32):
    model = build(dataclasses.replace(TINY, widths=(8, 16, 32))).eval()
    x = torch.rand(3, 200, 300)
    ref = restore(model, x, device="cpu", progress=False)
    y = restore(model, x, device="cuda", precision=precision, progress=False)
    tol = 1e-4 if precision == "fp32" else 5e-2
    assert y.device.type == "cpu" and (y - ref).abs().max() <= tol


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("name", VARIANTS)
def test_cuda_streamed_equals_whole_image(name, no_tf32):
    model = build(VARIANTS[name]).eval().cuda()
    x = torch.rand(3, 83, 141)
    ref = _whole(model, x.cuda()).cpu()
    for patch in (16, 48, "auto"):
        y = restore(model, x, device="cuda", patch_size=patch, progress=False)
        assert _err(y, ref) <= 1e-5, (name, patch)


@pytest.mark.cuda
@cuda
def test_cuda_auto_patch_stays_under_the_memory_cap(no_tf32):
    model = build(dataclasses.replace(TINY, widths=(8, 16, 32))).eval().cuda()
    x = torch.rand(3, 1024, 1536)
    whole = restore(model, x, device="cuda", patch_size="auto", progress=False)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    cap = 96 * 2**20
    capped = restore(model, x, device="cuda", patch_size="auto", max_memory=cap, progress=False)
    assert torch.cuda.max_memory_allocated() - base <= cap
    assert _err(capped, whole) <= 1e-5
    with pytest.raises(ValueError, match="max_memory: restoring"):
        restore(model, x, device="cuda", patch_size="auto", max_memory="1MB", progress=False)
