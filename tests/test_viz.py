"""glsgn.viz on small arrays: shapes, value ranges, labels, and the files it writes; and
glsgn.results, the loaders of what the pipeline wrote, on files the tests write."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from glsgn import results, viz


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


def test_image_grid_leaves_empty_panels_and_adds_a_colorbar():
    imgs = [np.random.rand(8, 8, 3), None, np.random.rand(8, 8)]
    fig = viz.image_grid(imgs, ["a", "unused", "mask"], cols=3, colorbar=("viridis", "mask"))
    shown = [a for a in fig.axes if a.images]
    assert [a.get_title() for a in shown] == ["a", "mask"]
    assert any(a.get_ylabel() == "mask" for a in fig.axes)  # the colorbar's axis
    with pytest.raises(ValueError, match="no images"):
        viz.image_grid([None], ["x"])


def test_band_image_on_a_given_scale():
    band = torch.full((3, 4, 4), 0.5)
    np.testing.assert_allclose(viz.band_image(band, vmax=1.0), 0.5)
    np.testing.assert_allclose(viz.band_image(band, vmax=0.25), 1.0)  # clipped


def test_pick_crop_matches_brute_force_and_finds_the_spot():
    rng = np.random.default_rng(0)
    err = rng.random((23, 31))
    box = viz.pick_crop(err, (5, 7))
    means = {(y, x): err[y : y + 5, x : x + 7].mean() for y in range(19) for x in range(25)}
    y, x = max(means, key=means.get)
    assert box == (y, y + 5, x, x + 7)
    spot = np.zeros((40, 60))
    spot[30:33, 50:53] = 1.0
    y0, y1, x0, x1 = viz.pick_crop(spot, (10, 10))
    assert y0 <= 30 and 33 <= y1 and x0 <= 50 and 53 <= x1
    assert viz.pick_crop(spot, (100, 100)) == (0, 40, 0, 60)  # clipped to the image
    with pytest.raises(ValueError, match="error map"):
        viz.pick_crop(np.zeros((4, 4, 3)), (2, 2))


def test_zoom_grid_outlines_and_enlarges_the_box():
    imgs = [np.random.rand(20, 30, 3) for _ in range(3)]
    box = (4, 12, 10, 22)
    fig = viz.zoom_grid(imgs, ["input", "full", "target"], box, cols=2)
    shown = [a for a in fig.axes if a.images]
    assert len(shown) == 6  # each image whole, and its crop
    crops = [a.images[0].get_array() for a in shown if a.images[0].get_array().shape[0] == 8]
    assert len(crops) == 3
    np.testing.assert_allclose(crops[0], imgs[0][4:12, 10:22])
    rect = [p for a in shown for p in a.patches]
    assert len(rect) == 3 and rect[0].get_width() == 12 and rect[0].get_height() == 8
    with pytest.raises(ValueError, match="differ in size"):
        viz.zoom_grid([imgs[0], np.random.rand(10, 30, 3)], ["a", "b"], box)


def test_zoom_grid_one_box_per_image_and_a_one_to_one_crop(tmp_path):
    """Each image its own box; a crop of `one_to_one()` pixels is drawn at about one image
    pixel per saved figure pixel, and its title says the magnification."""
    from PIL import Image

    side = viz.one_to_one()
    imgs = [np.random.rand(side + 40, side + 60, 3) for _ in range(2)]
    boxes = [(0, side, 0, side), (40, side + 40, 60, side + 60)]
    fig = viz.zoom_grid(imgs, ["a", "b"], boxes, cols=2)
    crops = [a for a in fig.axes if a.images and a.images[0].get_array().shape[0] == side]
    np.testing.assert_allclose(crops[1].images[0].get_array(), imgs[1][40:, 60:])
    mags = [float(a.get_title().split(" at ")[1].rstrip("x")) for a in crops]
    assert all(0.9 <= m <= 1.1 for m in mags), mags
    (png, _) = viz.save_figure(fig, tmp_path / "zoom")
    assert Image.open(png).width == pytest.approx(2 * side, rel=0.15)
    with pytest.raises(ValueError, match="one box or one each"):
        viz.zoom_grid(imgs, ["a", "b"], [(0, 8, 0, 8), (0, 9, 0, 9)])


def test_curve_grid_keeps_one_colour_per_label():
    x = np.arange(1, 6)
    panels = {
        "total": {"full": (x, 1 / x), "no_content": (x, 2 / x)},
        "content": {"full": (x, 0.1 / x)},
        "val PSNR": {"no_content": (x, x + 20.0)},
    }
    fig = viz.curve_grid(
        panels, "step", ylabel={"val PSNR": "dB"}, cols=2, logy={"total"}, highlight="full"
    )
    axes = {a.get_title(): a for a in fig.axes if a.get_title()}
    assert set(axes) == {"total", "content", "val PSNR"}
    assert axes["total"].get_yscale() == "log" and axes["content"].get_yscale() == "linear"
    assert axes["val PSNR"].get_ylabel() == "dB"
    lines = {(t, ln.get_label()): ln for t, a in axes.items() for ln in a.lines}
    assert (
        lines[("total", "no_content")].get_color() == lines[("val PSNR", "no_content")].get_color()
    )
    assert lines[("total", "full")].get_linewidth() > lines[("total", "no_content")].get_linewidth()
    np.testing.assert_allclose(lines[("val PSNR", "no_content")].get_ydata(), x + 20.0)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["full", "no_content"]


def test_efficiency_panels_from_benchmark_results(tmp_path):
    rows = [
        {
            "model": "glsgn",
            "mode": "stream",
            "size": "2K",
            "height": 1080,
            "width": 1920,
            "seconds": 8.0,
            "peak_rss_mb": 900,
        },
        {
            "model": "glsgn",
            "mode": "stream",
            "size": "1K",
            "height": 540,
            "width": 960,
            "seconds": 2.0,
            "peak_rss_mb": 700,
        },
        {
            "model": "fullres",
            "mode": "whole",
            "size": "1K",
            "height": 540,
            "width": 960,
            "seconds": 3.0,
            "peak_cuda_mb": 1000,
        },
        {"model": "fullres", "mode": "whole", "size": "2K", "error": "skipped: needs about 26 GB"},
    ]
    panels, ticks, notes = viz.efficiency_panels(rows)
    xs, ys = panels["time"]["GLSGN (patch-streamed)"]
    assert xs == pytest.approx([0.5184, 2.0736]) and ys == [2.0, 8.0]  # sorted by pixels
    assert panels["peak memory"]["fullres (whole image)"] == ([0.5184], [1000])
    assert ticks[0.5184] == "1K\n0.5 MP"
    assert "fullres (whole image) 2K: skipped: needs about 26 GB" in notes["peak memory"]
    path = tmp_path / "eff.json"
    path.write_text(json.dumps({"protocol": {"repeat": 3}, "results": rows}))
    assert results.load_benchmark(path) == ({"repeat": 3}, rows)
    path.write_text(json.dumps(rows))  # the results without their protocol
    with pytest.raises(ValueError, match="eff.json: expected a mapping with protocol"):
        results.load_benchmark(path)
    path.write_text("{}")
    with pytest.raises(ValueError, match="eff.json"):
        results.load_benchmark(path)
    with pytest.raises(FileNotFoundError, match="run dvc repro"):
        results.load_benchmark(tmp_path / "none.json")


def test_load_curves_reads_dvclive_tsv(tmp_path):
    root = tmp_path / "dvclive" / "run" / "seed3" / "plots" / "metrics"
    (root / "train").mkdir(parents=True)
    (root / "val").mkdir()
    (root / "train" / "total.tsv").write_text("step\ttotal\n5\t0.5\n10\t0.25\n")
    (root / "val" / "psnr.tsv").write_text("step\tpsnr\n10\t21.5\n")
    curves = results.load_curves(tmp_path / "dvclive", "run", 3)
    assert set(curves) == {"train/total", "val/psnr"}
    np.testing.assert_array_equal(curves["train/total"][0], [5, 10])
    np.testing.assert_array_equal(curves["val/psnr"][1], [21.5])
    with pytest.raises(FileNotFoundError, match="other"):
        results.load_curves(tmp_path / "dvclive", "other", 3)


def test_load_metrics_averages_seeds_in_variant_order(tmp_path):
    for run, variant in (("h-fullres", "fullres"), ("h-full", "full"), ("h-stale", "no_pac")):
        for seed, psnr in ((0, 20.0), (1, 22.0)):
            d = tmp_path / "metrics" / run
            d.mkdir(parents=True, exist_ok=True)
            scores = {"psnr": psnr + (variant == "full"), "ssim": 0.5, "lpips": None}
            (d / f"seed{seed}.json").write_text(json.dumps(scores))
            (d / f"seed{seed}.record.json").write_text(json.dumps({"variant": variant}))
            (d / f"seed{seed}.csv").write_text(f"name,seed,psnr,ssim\na.png,{seed},{psnr},0.5\n")
    runs = {"fullres": "h-fullres", "full": "h-full"}  # h-stale: no longer a run
    rows = results.load_metrics(tmp_path / "metrics", runs, [0, 1])
    assert [r["variant"] for r in rows] == ["full", "fullres"]
    assert rows[0]["psnr"] == 22.0 and rows[0]["psnr_by_seed"] == [21.0, 23.0]
    assert rows[0]["lpips"] is None and rows[0]["seeds"] == [0, 1]
    per_image = results.load_per_image(tmp_path / "metrics", "haze", runs, [1])
    assert per_image == [
        {
            "task": "haze",
            "variant": "fullres",
            "seed": 1,
            "image": "a.png",
            "psnr": 22.0,
            "ssim": 0.5,
        },
        {"task": "haze", "variant": "full", "seed": 1, "image": "a.png", "psnr": 22.0, "ssim": 0.5},
    ]
    with pytest.raises(FileNotFoundError, match="h-fullres/seed2.json: no metrics for h-fullres"):
        results.load_metrics(tmp_path / "metrics", runs, [0, 2])


def test_task_runs_in_variant_order():
    from glsgn.config import Params, from_dict

    train = {"variants": ["fullres", "no_pyramid"], "variant_tasks": ["rain"]}
    data = {"tasks": {"rain": {}, "haze": {}}}
    params = from_dict(Params, {"data": data, "train": {**train, "term_tasks": ["rain"]}})
    assert list(results.task_runs(params, "rain").items()) == [
        ("full", "rain-full"),
        *[(f"no_{t}", f"rain-no_{t}") for t in ("content", "attention", "intensity", "semantic")],
        ("no_pyramid", "rain-no_pyramid"),  # the table's order, not train.variants'
        ("fullres", "rain-fullres"),
    ]
    assert list(results.task_runs(params, "haze").items()) == [("full", "haze-full")]
    assert results.task_runs(params, "reflection") == {}


def test_load_pairs_alternates_photographs_and_scenes(tmp_path):
    root = tmp_path / "prepared" / "rain"
    sources = ["photo:a.png", "photo:b.png", "dead_leaves:7"]
    for i in range(len(sources)):
        for kind, value in (("input", 50 + i), ("target", 100 + i)):
            (root / "train" / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((6, 8, 3), value, np.uint8)).save(
                root / "train" / kind / f"rain_train_{i:04d}.png"
            )
    samples = [
        {"name": f"rain_train_{i:04d}.png", "split": "train", "source": s}
        for i, s in enumerate(sources)
    ]
    (root / "manifest.json").write_text(json.dumps({"samples": samples}))
    pairs = results.load_pairs(tmp_path / "prepared", "rain", "train", n=3)
    assert [(p["name"], p["source"]) for p in pairs] == [
        ("rain_train_0000", "photo"),
        ("rain_train_0002", "scene"),
        ("rain_train_0001", "photo"),
    ]
    assert pairs[1]["input"].shape == (6, 8, 3)
    np.testing.assert_allclose(pairs[1]["target"], 102 / 255, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="haze"):
        results.load_pairs(tmp_path / "prepared", "haze")


def test_project_root_is_found_from_a_subfolder(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text("{}\n")
    (tmp_path / "notebooks" / "deep").mkdir(parents=True)
    assert results.project_root(tmp_path / "notebooks" / "deep") == tmp_path.resolve()
    assert results.project_root(tmp_path) == tmp_path.resolve()
    (tmp_path / "params.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="dvc.yaml and params.yaml"):
        results.project_root(tmp_path / "notebooks")
