"""Patch-streamed restoration equals whole-image processing: no seams, whatever the grid."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from glsgn.model.resample import Region
from glsgn.restore import restore, tiles

from .conftest import TINY, VARIANTS, build


def _whole(model, x):
    with torch.no_grad():
        return model(x[None]).b_out[0]


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("patch", [16, 32, 48])
def test_streamed_equals_whole_image(name, patch):
    model = build(VARIANTS[name]).eval()
    x = torch.rand(3, 83, 141)  # odd sizes: padding, partial patches at both edges
    ref = _whole(model, x)
    y = restore(model, x, patch_size=patch, progress=False)
    assert y.shape == x.shape
    assert (y - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("hw", [(1, 1), (9, 5), (150, 40), (40, 200)])
def test_any_size_including_smaller_than_a_patch(hw):
    model = build(TINY).eval()
    x = torch.rand(3, *hw)
    y = restore(model, x, patch_size=16, progress=False)
    assert y.shape == x.shape
    assert (y - _whole(model, x)).abs().max() <= 1e-5


@pytest.mark.parametrize(
    "cfg, hw, patch",
    [
        # local_only: the reference passes still need the global view's alignment
        (dataclasses.replace(TINY, global_pathway=False, local_scales=(1.0,)), (37, 41), 16),
        (dataclasses.replace(TINY, global_pathway=False, global_scale=8), (40, 40), 16),
        (dataclasses.replace(TINY, widths=(4,), global_pathway=False, local_scales=(1.0,)),
         (1, 1), 4),
        # a large scale jump with a small receptive field: the cue needs its own halo
        (dataclasses.replace(TINY, widths=(16,), blocks=0, pac=False, local_scales=(1.0, 0.125),
                             patch_size=6), (45, 45), 6),
        (dataclasses.replace(TINY, widths=(4,), global_scale=2, local_scales=(1.0, 1 / 64),
                             patch_size=8), (70, 90), 8),
        (dataclasses.replace(TINY, widths=(4, 8, 16, 32), blocks=2, global_scale=8), (50, 70), 16),
    ],
)  # fmt: skip
def test_streamed_equals_whole_for_unusual_configs(cfg, hw, patch):
    model = build(cfg).eval()
    x = torch.rand(3, *hw)
    y = restore(model, x, patch_size=patch, progress=False)
    assert (y - _whole(model, x)).abs().max() <= 1e-5


def test_halo_below_the_receptive_field_shows_seams():
    """The equality above is not luck: without the halo, patch borders differ."""
    model = build(TINY).eval()
    x = torch.rand(3, 96, 96)
    ref = _whole(model, x)
    assert (restore(model, x, patch_size=32, halo=0, progress=False) - ref).abs().max() > 1e-3


def test_patch_grid_does_not_change_the_output():
    model = build(TINY).eval()
    x = torch.rand(3, 100, 120)
    a = restore(model, x, patch_size=16, progress=False)
    b = restore(model, x, patch_size=64, progress=False)
    assert (a - b).abs().max() <= 1e-5


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


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_matches_cpu(precision):
    model = build(dataclasses.replace(TINY, widths=(8, 16, 32))).eval()
    x = torch.rand(3, 200, 300)
    ref = restore(model, x, device="cpu", progress=False)
    y = restore(model, x, device="cuda", precision=precision, progress=False)
    tol = 1e-4 if precision == "fp32" else 5e-2
    assert (y - ref).abs().max() <= tol
