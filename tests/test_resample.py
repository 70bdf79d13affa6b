"""Resampling between pathway grids, checked against torch's own interpolation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from glsgn.model.pyramid import high_band
from glsgn.model.resample import Region, downscale, resample


def test_same_grid_is_a_crop():
    t = torch.rand(1, 2, 10, 12)
    src = Region.whole(10, 12)
    dst = Region((10, 12), (2, 7, 3, 12))
    assert torch.equal(resample(t, src, dst), t[..., 2:7, 3:12])


def test_two_times_coarser_is_the_2x2_mean():
    t = torch.rand(1, 3, 16, 20)
    y = resample(t, Region.whole(16, 20), Region.whole(8, 10))
    torch.testing.assert_close(y, F.avg_pool2d(t, 2), rtol=0, atol=1e-6)


@pytest.mark.parametrize("factor", [2, 4])
def test_upsampling_matches_bilinear_interpolate(factor):
    t = torch.rand(1, 3, 7, 9)
    y = resample(t, Region.whole(7, 9), Region.whole(7 * factor, 9 * factor))
    ref = F.interpolate(t, scale_factor=factor, mode="bilinear", align_corners=False)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-6)


def test_resampling_a_region_equals_the_region_of_the_whole():
    t = torch.rand(1, 2, 12, 12)
    whole = resample(t, Region.whole(12, 12), Region.whole(36, 36))
    dst = Region((36, 36), (5, 20, 11, 30))
    assert torch.equal(resample(t, Region.whole(12, 12), dst), whole[..., 5:20, 11:30])


def test_region_geometry():
    r = Region((64, 64), (16, 48, 0, 32))
    assert r.coarser(4) == Region((16, 16), (4, 12, 0, 8))
    assert r.coarser(4).finer(4) == r
    assert r.expand(20) == Region((64, 64), (0, 64, 0, 52))
    with pytest.raises(ValueError, match="not aligned"):
        Region((64, 64), (3, 48, 0, 32)).coarser(2)
    with pytest.raises(ValueError, match="not inside"):
        r.slices(Region((64, 64), (0, 10, 0, 10)))


def test_downscale_is_area_mean_and_band_removes_the_mean():
    t = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(downscale(t, 4), F.avg_pool2d(t, 4))
    flat = torch.full((1, 3, 8, 8), 0.3)
    assert high_band(flat, Region.whole(8, 8)).abs().max() < 1e-6
