"""Data: determinism, the physics of each degradation, scaling with resolution, the paired
adapter, the prepare stage and the training crops."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.measure import label, regionprops

from glsgn.config import DataConfig, Params
from glsgn.data import arrays, synthesis
from glsgn.data.datasets import PairedImages, TrainCrops
from glsgn.data.io import read_image, write_image
from glsgn.data.paired import PairedFolderError, check_pairs, find_pairs
from glsgn.data.prepare import prepare, synthesize_sample
from glsgn.data.scenes import dead_leaves
from glsgn.data.synthesis import HazeConfig, LowLightConfig, RainConfig, ReflectionConfig
from glsgn.model import build_model
from glsgn.model.resample import Region, downscale, pad_to_multiple

from .conftest import TINY, build

SMALL = DataConfig(
    size=(96, 160),
    reference_size=160,
    splits=dataclasses.replace(DataConfig().splits, train=2, val=1, test=1),
)


def _photo(h=120, w=200, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx), np.cos(5 * yy), np.sin(4 * (xx + yy))], -1) * 0.3 + 0.5
    return np.clip(base + rng.normal(0, 0.03, (h, w, 3)), 0, 1).astype(np.float32)


# --- scenes ----------------------------------------------------------------------------------


def test_dead_leaves_is_deterministic_and_seed_dependent():
    a, b, c = dead_leaves(64, 96, 5), dead_leaves(64, 96, 5), dead_leaves(64, 96, 6)
    assert a.image.tobytes() == b.image.tobytes() and a.depth.tobytes() == b.depth.tobytes()
    assert a.image.tobytes() != c.image.tobytes()


@pytest.mark.parametrize("hw", [(128, 256), (512, 1024)])
def test_dead_leaves_has_detail_down_to_the_pixel_at_any_size(hw):
    s = dead_leaves(*hw, seed=1)
    assert s.image.shape == (*hw, 3) and s.image.dtype == np.float32
    assert 0 <= s.image.min() and s.image.max() <= 1
    step = np.abs(np.diff(s.image, axis=1)).mean()  # energy at the one-pixel scale
    assert step > 0.02, step
    assert 0 <= s.depth.min() and s.depth.max() <= 1 and len(np.unique(s.depth)) > 50


def test_dead_leaves_depth_is_the_occlusion_order():
    """Within one leaf depth is constant; a nearer leaf has a smaller depth than what it covers."""
    s = dead_leaves(128, 128, seed=3)
    d = s.depth
    # Each visible leaf is a region of constant depth whose colour statistics differ from
    # its neighbours': check that depth edges coincide with image edges.
    depth_edge = np.abs(np.diff(d, axis=1)) > 0
    image_edge = np.abs(np.diff(s.image, axis=1)).max(-1)
    assert image_edge[depth_edge].mean() > 2 * image_edge[~depth_edge].mean()


# --- degradations ----------------------------------------------------------------------------


def test_haze_follows_the_scattering_model_and_reduces_contrast():
    j = _photo()
    depth = np.full(j.shape[:2], 0.5, np.float32)
    cfg = HazeConfig(beta=(1.2, 1.2), airlight=(0.9, 0.9), tint=0.0)
    d = synthesis.haze(j, 7, cfg, depth)
    t = np.exp(-1.2 * 0.5)
    np.testing.assert_allclose(d.degraded, j * t + 0.9 * (1 - t), atol=1e-6)
    assert d.degraded.std() < j.std()
    np.testing.assert_allclose(d.layer, d.degraded - d.clean, atol=1e-7)
    # Photographs get the smooth depth prior; t stays in (0, 1].
    d2 = synthesis.haze(j, 7, HazeConfig())
    assert 0 < d2.params["t_min"] <= 1
    prior = synthesis.smooth_depth(*j.shape[:2], seed=7)
    assert prior.min() == 0 and prior.max() == 1
    assert prior[:10].mean() > prior[-10:].mean()  # farther towards the top


def test_lowlight_darkens_as_its_model_says():
    j = _photo()
    exact = LowLightConfig(
        exposure=(0.2, 0.2), gamma=(1.5, 1.5), read_noise=(0.0, 0.0), shot_noise=(0.0, 0.0)
    )
    d = synthesis.lowlight(j, 3, exact)
    np.testing.assert_allclose(d.degraded, 0.2 * j**1.5, atol=1e-6)
    noisy = dataclasses.replace(exact, read_noise=(0.02, 0.02), shot_noise=(0.005, 0.005))
    n = synthesis.lowlight(j, 3, noisy).degraded - d.degraded
    expected = np.sqrt(0.02**2 + 0.005 * d.degraded)  # read and shot noise, by signal
    ratio = n.std() / expected.mean()
    assert 0.9 < ratio < 1.1, ratio
    assert abs(n.mean()) < 0.002
    assert d.degraded.mean() < 0.3 * j.mean()


@pytest.mark.parametrize("shape, length", [((288, 512), 20.0), ((128, 224), 9.8), ((16, 24), 40.0)])
def test_rain_streaks_wrap_around_as_scipy_says(shape, length):
    """Against scipy.ndimage.correlate(mode="wrap"). OpenCV's BORDER_WRAP, used before, was
    off by up to 5.5 at 288x512 (the streak layer of every rain pair at that size) and refused
    some small images outright."""
    from scipy.ndimage import correlate

    img = np.random.default_rng(0).random(shape).astype(np.float32)
    kernel = synthesis.streak_kernel(length, 1.5, 12.0)
    reference = correlate(img.astype(np.float64), kernel.astype(np.float64), mode="wrap")
    assert np.abs(synthesis._wrap_filter(img, kernel) - reference).max() < 1e-5


def test_haze_depth_of_photographs_is_no_position_cue():
    """Averaged over samples, no place in the frame is farther than another: a model cannot
    learn the haze from where a pixel is. (The earlier prior, a top-to-bottom ramp, put the
    top third 0.5 farther than the bottom third on average.)"""
    h, w = 48, 80
    maps = np.stack([synthesis.smooth_depth(h, w, seed) for seed in range(400)])
    assert maps.min() >= 0 and maps.max() <= 1
    mean = maps.mean(0)
    thirds_v = [mean[i * h // 3 : (i + 1) * h // 3].mean() for i in range(3)]
    thirds_h = [mean[:, i * w // 3 : (i + 1) * w // 3].mean() for i in range(3)]
    assert max(thirds_v) - min(thirds_v) < 0.05 and max(thirds_h) - min(thirds_h) < 0.05
    # ... yet each map has structure: a smooth field that varies over the frame
    assert np.median(maps.std(axis=(1, 2))) > 0.15
    grad = np.abs(np.diff(maps, axis=2)).mean()
    assert grad < 0.05  # smooth at the pixel scale


@pytest.mark.parametrize("n_photos", [1, 2, 4])
def test_the_reflected_layer_never_comes_from_the_background_image(n_photos):
    photos = [(f"p{i}.png", _photo(seed=i)) for i in range(n_photos)]
    cfg = dataclasses.replace(SMALL, scene_fraction=0.3)
    pairs = [synthesize_sample("reflection", cfg, photos, seed) for seed in range(60)]
    assert any(src.startswith("photo:") for _, src in pairs)
    for d, src in pairs:
        assert d.params["reflected"] != src, src
        if n_photos == 1 and src.startswith("photo:"):
            assert d.params["reflected"].startswith("dead_leaves:")


def test_reflection_only_adds_light():
    t, r = _photo(seed=1), _photo(seed=2)[::-1].copy()
    d = synthesis.reflection(t, r, 3, ReflectionConfig(), scale=1.0)
    assert d.layer.min() >= 0 and d.layer.sum() > 0
    assert d.degraded.mean() > t.mean()
    np.testing.assert_array_equal(d.clean, t)
    assert d.degraded.max() <= 1


def _rain_angle(layer: np.ndarray) -> float:
    """Streak direction in degrees from vertical (clockwise): the median major-axis orientation
    of the streaks' second moments (skimage). The gradient structure tensor of such thin,
    anti-aliased lines is biased towards the grid (about 15% of the angle), the moments are not.
    """
    g = layer.mean(-1)
    regions = regionprops(label(g > 0.02), intensity_image=g)
    return float(np.median([np.degrees(r.orientation) for r in regions if r.area > 20]))


@pytest.mark.parametrize("angle", [-20.0, 0.0, 12.0])
def test_rain_streaks_point_where_asked(angle):
    cfg = RainConfig(
        layers=(1, 1),
        angle=(angle, angle),
        jitter=0.0,
        length=(40.0, 40.0),
        density=(150.0, 150.0),
        width=(1.5, 1.5),
    )
    d = synthesis.rain(np.zeros((512, 512, 3), np.float32), 1, cfg, scale=1.0)
    assert d.layer.min() >= 0 and d.layer.max() > 0.1
    assert abs(_rain_angle(d.layer) - angle) < 1.0


def test_rain_streaks_grow_with_resolution():
    cfg = RainConfig(
        layers=(1, 1),
        angle=(0.0, 0.0),
        jitter=0.0,
        length=(20.0, 20.0),
        density=(300.0, 300.0),
        width=(1.0, 1.0),
        brightness=(0.6, 0.6),
    )
    lengths = []
    for scale in (1, 4):
        h, w = 256 * scale, 384 * scale
        d = synthesis.rain(np.zeros((h, w, 3), np.float32), 2, cfg, scale=scale)
        regions = regionprops(label(d.layer.mean(-1) > 0.05))
        lengths.append(np.median([r.axis_major_length for r in regions]))
    assert 3.0 < lengths[1] / lengths[0] < 5.0, lengths
    assert (
        synthesis.streak_kernel(80, 2, 0).shape[0] > 3 * synthesis.streak_kernel(20, 2, 0).shape[0]
    )


@pytest.mark.parametrize("task", ["reflection", "rain", "haze", "lowlight"])
def test_samples_are_deterministic(task):
    photos = [("p.png", _photo())]
    cfg = dataclasses.replace(SMALL, tasks={task: {}})
    a, src_a = synthesize_sample(task, cfg, photos, 11)
    b, src_b = synthesize_sample(task, cfg, photos, 11)
    c, _ = synthesize_sample(task, cfg, photos, 12)
    assert src_a == src_b
    assert a.degraded.tobytes() == b.degraded.tobytes() and a.clean.tobytes() == b.clean.tobytes()
    assert a.degraded.tobytes() != c.degraded.tobytes()
    assert a.degraded.shape == (*SMALL.size, 3)


# --- paired folders --------------------------------------------------------------------------


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((arr * 255).astype(np.uint8)).save(path)


def test_paired_adapter_lists_every_problem_at_once(tmp_path):
    _save(tmp_path / "input" / "a.png", _photo(32, 32))
    _save(tmp_path / "target" / "a.png", _photo(32, 32))
    _save(tmp_path / "input" / "only_input.png", _photo(32, 32))
    _save(tmp_path / "target" / "only_target.jpg", _photo(32, 32))
    with pytest.raises(PairedFolderError) as e:
        find_pairs("input", "target", base=tmp_path)
    msg = str(e.value)
    assert "only_input.png: input has no target" in msg
    assert "only_target.jpg: target has no input" in msg
    assert "2 problem(s)" in msg

    (tmp_path / "input" / "only_input.png").unlink()
    (tmp_path / "target" / "only_target.jpg").unlink()
    _save(tmp_path / "input" / "b.png", _photo(32, 32))
    _save(tmp_path / "target" / "b.png", _photo(40, 32))  # size mismatch
    (tmp_path / "input" / "c.png").write_bytes(b"not an image")
    _save(tmp_path / "target" / "c.png", _photo(32, 32))
    pairs = find_pairs("input", "target", base=tmp_path)
    assert [p.name for p in pairs] == ["a", "b", "c"]
    with pytest.raises(PairedFolderError) as e:
        check_pairs(pairs)
    msg = str(e.value)
    assert "b.png: size 32x32 differs from its target" in msg and "c.png:" in msg
    with pytest.raises(PairedFolderError, match="no such folder"):
        find_pairs("nope", "target", base=tmp_path)
    assert [p.name for p in find_pairs("input/a*", "target/a*", base=tmp_path)] == ["a"]


def test_every_reader_of_pairs_words_a_size_mismatch_alike(tmp_path):
    _save(tmp_path / "input" / "b.png", _photo(32, 48))
    _save(tmp_path / "target" / "b.png", _photo(40, 48))
    x, y = tmp_path / "input" / "b.png", tmp_path / "target" / "b.png"
    expected = f"{x}: size 48x32 differs from its target {y} (48x40)"
    with pytest.raises(PairedFolderError) as e:
        check_pairs(find_pairs("input", "target", base=tmp_path))
    assert expected in str(e.value)
    with pytest.raises(PairedFolderError) as e:
        PairedImages(tmp_path)[0]
    assert str(e.value) == expected
    with pytest.raises(PairedFolderError) as e:
        TrainCrops(tmp_path, crop=None, multiple=16, global_scale=2)[0]
    assert str(e.value) == expected
    with pytest.raises(PairedFolderError) as e:
        TrainCrops(tmp_path, crop=None, multiple=16, global_scale=2, cache=tmp_path / "cache")
    assert str(e.value) == expected


# --- the prepare stage -----------------------------------------------------------------------


def test_prepare_without_photographs_says_so(tmp_path, caplog):
    """A missing raw folder (a fresh clone before data.dvc is pulled in) still prepares, from
    scenes alone, and the log names the folder: the data are not the pipeline's."""
    with caplog.at_level(logging.WARNING, logger="glsgn.data.prepare"):
        m = prepare("haze", Params(data=SMALL), tmp_path / "nowhere", tmp_path / "a", False)
    assert f"{tmp_path / 'nowhere'} is not a folder: no photographs" in caplog.text
    assert all(s["source"].startswith("dead_leaves") for s in m["samples"])


def test_prepare_synthetic_is_reproducible_and_complete(tmp_path):
    raw = tmp_path / "raw"
    for i in range(3):
        _save(raw / f"photo{i}.png", _photo(seed=i))
    params = Params(data=SMALL)
    m1 = prepare("rain", params, raw, tmp_path / "a", progress=False)
    m2 = prepare("rain", params, raw, tmp_path / "b", progress=False)
    assert [s["sha256"] for s in m1["samples"]] == [s["sha256"] for s in m2["samples"]]
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        for kind in ("input", "target"):
            files = sorted((tmp_path / "a" / split / kind).iterdir())
            assert len(files) == n
            assert Image.open(files[0]).size == (160, 96)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["task"] == "rain" and len(manifest["samples"]) == 4
    settings = manifest["data"]  # rain's alone: another task's change leaves these data be
    assert list(settings["tasks"]) == ["rain"] and list(settings["degradations"]) == ["rain"]
    assert settings["degradations"]["rain"]["layers"] == [2, 4]


def test_prepare_puts_no_photograph_in_two_splits(tmp_path):
    """Every split draws photographs (no scenes; two photographs each for val and test), both
    as the background and as the reflected layer, and none is drawn by two splits."""
    raw = tmp_path / "raw"
    for i in range(10):
        _save(raw / f"photo{i}.png", _photo(48, 80, seed=i))
    cfg = DataConfig(
        size=(24, 40),
        reference_size=160,
        scene_fraction=0.0,
        splits=dataclasses.replace(DataConfig().splits, train=6, val=6, test=6),
    )
    m = prepare("reflection", Params(data=cfg), raw, tmp_path / "out", progress=False)
    photo_splits: dict[str, set[str]] = {}
    for s in m["samples"]:
        for src in (s["source"], s["params"]["reflected"]):
            assert src.startswith("photo:"), src
            photo_splits.setdefault(src, set()).add(s["split"])
    assert {s for v in photo_splits.values() for s in v} == {"train", "val", "test"}
    assert len(photo_splits) >= 8, sorted(photo_splits)  # the check below has much to catch
    shared = {src: sorted(v) for src, v in photo_splits.items() if len(v) > 1}
    assert not shared, f"photographs in two splits: {shared}"


def test_prepare_keeps_the_old_output_when_it_fails(tmp_path, monkeypatch):
    params = Params(data=SMALL)
    out = tmp_path / "prepared"
    prepare("haze", params, tmp_path / "missing", out, progress=False)
    before = sorted(p.name for p in (out / "train" / "input").iterdir())
    calls = []

    def broken(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return synthesize_sample(*a, **k)

    monkeypatch.setattr("glsgn.data.prepare.synthesize_sample", broken)
    with pytest.raises(RuntimeError):
        prepare("haze", params, tmp_path / "missing", out, progress=False)
    assert sorted(p.name for p in (out / "train" / "input").iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]  # no temporary left


def test_prepare_paired_checks_and_references(tmp_path):
    raw = tmp_path / "raw"
    for split in ("train", "val", "test"):
        for name in ("x1", "x2"):
            _save(raw / "rain" / split / "input" / f"{name}.png", _photo(48, 64))
            _save(raw / "rain" / split / "target" / f"{name}.png", _photo(48, 64, seed=1))
    params = Params(data=dataclasses.replace(SMALL, tasks={"rain": {"paired": {}}}))
    m = prepare("rain", params, raw, tmp_path / "out", progress=False)
    assert m["source"] == "paired" and len(m["samples"]) == 6
    listed = json.loads((tmp_path / "out" / "val" / "pairs.json").read_text())
    (x2,) = [e for e in listed if e["name"] == "x2"]  # referenced where it lies, not copied
    assert (tmp_path / "out" / "val" / x2["input"]).resolve() == raw / "rain/val/input/x2.png"
    assert [p.name for p in PairedImages(tmp_path / "out" / "val").pairs] == ["x1", "x2"]
    (raw / "rain" / "test" / "target" / "x2.png").unlink()
    with pytest.raises(PairedFolderError, match="x2.png: input has no target"):
        prepare("rain", params, raw, tmp_path / "out", progress=False)


# --- datasets --------------------------------------------------------------------------------


def _prepared(tmp_path, n=2, hw=(72, 104)):
    for i in range(n):
        _save(tmp_path / "input" / f"s{i}.png", _photo(*hw, seed=i))
        _save(tmp_path / "target" / f"s{i}.png", _photo(*hw, seed=10 + i))
    return tmp_path


def test_train_crops_are_aligned_seeded_and_fit_the_model(tmp_path):
    root = _prepared(tmp_path)
    model = build_model(TINY)
    m = model.pad_multiple
    ds = TrainCrops(root, crop=32, multiple=m, global_scale=model.geometry.global_factor, seed=3)
    item = ds[0]
    assert item["input"].shape == item["target"].shape == (3, 32, 32)
    h, w = item["size"].tolist()
    assert (h, w) == (80, 112)  # padded to multiples of 16
    assert item["input_global"].shape == (3, h // 4, w // 4)
    y0, y1, x0, x1 = item["box"].tolist()
    assert y0 % m == 0 and x0 % m == 0 and (y1 - y0, x1 - x0) == (32, 32)
    again = ds[0]
    assert torch.equal(item["input"], again["input"]) and torch.equal(item["box"], again["box"])
    ds.set_epoch(1)
    others = [ds[0] for _ in range(1)] + [TrainCrops(root, 32, m, 4, seed=s)[0] for s in range(6)]
    assert any(not torch.equal(o["box"], item["box"]) for o in others)
    # The crop is the padded, flipped whole image at `box`: the global view agrees with it.
    whole_flips = [item["input_global"]]
    assert torch.allclose(
        torch.nn.functional.avg_pool2d(item["input"][None], 4)[0],
        whole_flips[0][:, y0 // 4 : y1 // 4, x0 // 4 : x1 // 4],
        atol=1e-6,
    )
    out = model(
        item["input"][None],
        global_view=item["input_global"][None],
        region=Region((h, w), (y0, y1, x0, x1)),
    )
    assert out.b_out.shape == (1, 3, 32, 32)


def test_train_crops_of_null_size_are_the_whole_padded_image(tmp_path):
    """train.crop: null trains on what inference sees: the whole image, nothing at a crop's
    border; the training form then equals the whole-image forward."""
    root = _prepared(tmp_path)
    model = build(TINY).eval()
    item = TrainCrops(root, crop=None, multiple=model.pad_multiple, global_scale=4, seed=3)[0]
    h, w = item["size"].tolist()
    assert item["box"].tolist() == [0, h, 0, w] and item["input"].shape == (3, h, w)
    with torch.no_grad():
        crop_form = model(
            item["input"][None], global_view=item["input_global"][None], region=Region.whole(h, w)
        ).b_out
        whole = model(item["input"][None]).b_out
    torch.testing.assert_close(crop_form, whole, rtol=0, atol=1e-6)


def test_paired_images_gives_whole_images(tmp_path):
    ds = PairedImages(_prepared(tmp_path, n=3))
    assert len(ds) == 3 and ds[2]["name"] == "s2" and ds[2]["input"].shape == (3, 72, 104)
    with pytest.raises(ValueError, match="multiple of 16"):
        TrainCrops(tmp_path, crop=40, multiple=16, global_scale=4)


# --- the decoded-array cache -----------------------------------------------------------------


def _reference_item(root, crop, multiple, global_scale, seed, augment, key) -> dict:
    """TrainCrops.__getitem__ as it was before the cache (decode, flip, pad and pool the whole
    images, then crop), kept as the reference that every item must equal bit for bit."""
    i, epoch, batch = key
    rng = np.random.default_rng([seed, epoch, i])
    item = PairedImages(root)[i]
    x, y = item["input"], item["target"]
    if augment:
        for dim in (-1, -2):
            if rng.random() < 0.5:
                x, y = x.flip(dim), y.flip(dim)
    x, _ = pad_to_multiple(x[None], multiple)
    y, _ = pad_to_multiple(y[None], multiple)
    h, w = x.shape[-2:]
    ch, cw = (h, w) if crop is None else (min(crop, h), min(crop, w))
    pos = np.random.default_rng([seed, batch, 1])
    y0 = int(pos.integers(0, (h - ch) // multiple + 1)) * multiple
    x0 = int(pos.integers(0, (w - cw) // multiple + 1)) * multiple
    return {
        "name": item["name"],
        "input": x[0, :, y0 : y0 + ch, x0 : x0 + cw],
        "target": y[0, :, y0 : y0 + ch, x0 : x0 + cw],
        "input_global": downscale(x, global_scale)[0],
        "target_global": downscale(y, global_scale)[0],
        "box": torch.tensor([y0, y0 + ch, x0, x0 + cw]),
        "size": torch.tensor([h, w]),
    }


def _mixed_split(root):
    """Pairs whose sides are no multiple of 16 (so padding happens): 8-bit and 16-bit RGB,
    8-bit and 16-bit grayscale, of two sizes."""
    kinds = [
        ("rgb8", 8, False, (37, 53)),
        ("rgb16", 16, False, (37, 53)),
        ("gray8", 8, True, (37, 53)),
        ("gray16", 16, True, (50, 30)),
    ]
    for n, (name, bits, gray, hw) in enumerate(kinds):
        for side, seed in (("input", n), ("target", 10 + n)):
            path = root / side / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_image(path, _photo(*hw, seed=seed), bit_depth=bits, grayscale=gray)
    got = [
        (
            read_image(root / "input" / f"{k[0]}.png").bit_depth,
            read_image(root / "input" / f"{k[0]}.png").grayscale,
        )
        for k in kinds
    ]
    assert got == [(k[1], k[2]) for k in kinds]
    return root


def _keys(n: int) -> list[tuple[int, int, int]]:
    return [(i, e, b) for i in range(n) for e in range(4) for b in (0, 1, 7)]


def _assert_items_equal(item: dict, ref: dict) -> None:
    assert item["name"] == ref["name"]
    for k in ("input", "target", "input_global", "target_global"):
        a, b = item[k], ref[k]
        assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape, k
        assert torch.equal(a, b), k
    assert torch.equal(item["box"], ref["box"]) and torch.equal(item["size"], ref["size"])


@pytest.mark.parametrize("crop", [None, 16, 64])  # 64 is larger than the 37 x 53 images
@pytest.mark.parametrize("cached", [False, True])
def test_train_crops_equal_the_reference_bit_for_bit(tmp_path, crop, cached):
    root = _mixed_split(tmp_path / "split")
    seed, m, s = 5, 16, 4
    flips = set()
    for i, e, _ in _keys(4):
        rng = np.random.default_rng([seed, e, i])
        flips.add((rng.random() < 0.5, rng.random() < 0.5))
    assert len(flips) == 4  # every flip state is covered
    cache = tmp_path / "cache" if cached else None
    ds = TrainCrops(root, crop, m, s, seed=seed, cache=cache, progress=False)
    for key in _keys(len(ds)):
        _assert_items_equal(ds[key], _reference_item(root, crop, m, s, seed, True, key))
    plain = TrainCrops(root, crop, 8, 2, seed=seed, augment=False, cache=cache, progress=False)
    for key in _keys(len(plain))[::5]:
        _assert_items_equal(plain[key], _reference_item(root, crop, 8, 2, seed, False, key))


def _count_decodes(monkeypatch) -> list:
    calls = []

    def counting(path):
        calls.append(path)
        return read_image(path)

    monkeypatch.setattr(arrays, "read_image", counting)
    return calls


def _forbid(monkeypatch, *names) -> None:
    def fail(*a, **k):
        raise AssertionError("the cache should have been reused")

    for name in names:
        monkeypatch.setattr(arrays, name, fail)


def test_train_crops_cache_is_reused(tmp_path, monkeypatch, caplog):
    root, cache = _mixed_split(tmp_path / "split"), tmp_path / "cache"
    calls = _count_decodes(monkeypatch)
    with caplog.at_level(logging.INFO, logger="glsgn.data.arrays"):
        TrainCrops(root, 16, 16, 4, cache=cache, progress=False)
    assert len(calls) == 8 and "4 pair(s) decoded, 0 reused" in caplog.text
    assert str(cache / "v1") in caplog.text
    _forbid(monkeypatch, "read_image", "_file_hash")  # neither decoded nor hashed again
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="glsgn.data.arrays"):
        ds = TrainCrops(root, 16, 16, 4, seed=2, cache=cache, progress=False)
    assert "0 pair(s) decoded, 4 reused" in caplog.text
    for key in _keys(len(ds))[::3]:
        _assert_items_equal(ds[key], _reference_item(root, 16, 16, 4, 2, True, key))
    # A new (multiple, global_scale) adds its global views from the cached pixels, no decode.
    ds = TrainCrops(root, None, 8, 2, seed=2, cache=cache, progress=False)
    _assert_items_equal(ds[1, 0, 0], _reference_item(root, None, 8, 2, 2, True, (1, 0, 0)))


def test_train_crops_cache_rebuilds_changed_and_damaged_entries(tmp_path, monkeypatch):
    root, cache = _mixed_split(tmp_path / "split"), tmp_path / "cache"
    TrainCrops(root, 16, 16, 4, cache=cache, progress=False)
    calls = _count_decodes(monkeypatch)

    write_image(root / "input" / "rgb16.png", _photo(37, 53, seed=99), bit_depth=16)
    ds = TrainCrops(root, 16, 16, 4, cache=cache, progress=False)
    assert [p.name for p in calls] == ["rgb16.png"]
    for key in _keys(len(ds))[::3]:
        _assert_items_equal(ds[key], _reference_item(root, 16, 16, 4, 0, True, key))

    pixels = sorted((cache / "v1" / "pixels").iterdir())
    views = sorted((cache / "v1" / "global-m16-s4").iterdir())
    for f in (pixels[0], views[1]):  # truncated, as by a full disk
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    (cache / "v1" / "index.json").write_text("{not json")  # only costs re-hashing
    calls.clear()
    ds = TrainCrops(root, 16, 16, 4, cache=cache, progress=False)
    assert len(calls) == 1  # the pixels; the global views come back from cached pixels
    for key in _keys(len(ds))[::3]:
        _assert_items_equal(ds[key], _reference_item(root, 16, 16, 4, 0, True, key))
    assert not list(cache.rglob("*.tmp"))


def test_prepare_takes_the_photographs_glsgn_photos_listed(tmp_path):
    """A raw folder made by `glsgn photos` (PACKAGE/NAME and manifest.json): the listed
    photographs are the clean images, decoded when drawn; nothing else in the folder is."""
    raw = tmp_path / "photos"
    listed = [f"pkg{i}/shot{i}.png" for i in range(5)]
    for i, f in enumerate(listed):
        _save(raw / f, _photo(120, 200, seed=i))
    _save(raw / "not_listed.png", _photo(seed=9))
    (raw / "manifest.json").write_text(json.dumps({"photos": [{"file": f} for f in listed]}))
    data = dataclasses.replace(SMALL, scene_fraction=0.0, tasks={"rain": {}})
    m = prepare("rain", Params(data=data), raw, tmp_path / "out", progress=False)
    sources = {s["source"] for s in m["samples"]}
    assert sources and sources <= {f"photo:{f}" for f in listed}
