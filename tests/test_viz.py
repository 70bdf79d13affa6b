"""glsgn.viz on small arrays: shapes, value ranges, labels, and the files it writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from glsgn import viz


def test_to_image_accepts_every_layout():
    chw = torch.rand(3, 8, 12)
    for x in (chw, chw[None], chw.permute(1, 2, 0).numpy(), chw[:1], chw[0].numpy()):
        out = viz.to_image(x)
        assert out.shape == (8, 12, 3) and 0 <= out.min() and out.max() <= 1
    assert np.allclose(viz.to_image(chw), chw.permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match="1 or 3 channels"):
        viz.to_image(torch.rand(5, 8, 12))


def test_attention_overlay_follows_the_attention_map():
    image = np.full((32, 48, 3), 0.5)
    att = torch.zeros(1, 1, 4, 6)
    att[..., :, 3:] = 1.0  # attend to the right half
    out = viz.attention_overlay(image, att, alpha=1.0, cmap="gray")
    assert out.shape == (32, 48, 3)
    assert out[:, :20].max() < 0.05 and out[:, 28:].min() > 0.95  # resized to the image
    np.testing.assert_allclose(viz.attention_overlay(image, att, alpha=0.0), image)


def test_band_image_is_scaled_magnitude():
    band = torch.zeros(3, 10, 10)
    band[:, 5, 5] = -2.0
    band[:, 0, 0] = 1.0
    out = viz.band_image(band, percentile=100)
    assert out.shape == (10, 10, 3)
    assert out[5, 5, 0] == 1.0 and out[0, 0, 0] == 0.5 and out[1, 1, 0] == 0.0


def test_crop_checks_its_box():
    img = np.random.rand(20, 30, 3)
    assert viz.crop(img, (2, 12, 5, 25)).shape == (10, 20, 3)
    with pytest.raises(ValueError, match="not inside"):
        viz.crop(img, (2, 22, 5, 25))


def test_metric_bars_label_differences_and_missing_values(tmp_path):
    fig = viz.metric_bars({"full": 20.0, "no_content": 19.5, "fullres": None}, "PSNR", unit="dB")
    ax = fig.axes[0]
    assert len(ax.patches) == 3
    labels = [t.get_text() for t in ax.texts]
    assert "20" in labels and "19.5\n(-0.5)" in labels and "n/a" in labels
    assert ax.get_ylabel() == "PSNR (dB)"
    png, pdf = viz.save_figure(fig, tmp_path / "figs" / "psnr")
    assert Image.open(png).size[0] > 100 and pdf.read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["psnr.pdf", "psnr.png"]


def test_image_grid_shape(tmp_path):
    imgs = [np.random.rand(16, 32, 3) for _ in range(4)]
    fig = viz.image_grid(imgs, ["input", "B_g", "B_1", "target"], cols=2, size=2.0)
    assert len([a for a in fig.axes if a.images]) == 4
    assert [a.get_title() for a in fig.axes if a.images] == ["input", "B_g", "B_1", "target"]
    with pytest.raises(ValueError, match="titles"):
        viz.image_grid(imgs, ["a"])
    png, _ = viz.save_figure(fig, tmp_path / "grid", dpi=50)
    w, h = Image.open(png).size
    assert w > h  # two 2:1 images per row, two rows: wider than tall
