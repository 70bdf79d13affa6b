"""The real UHD datasets as they ship: small fake trees in each dataset's own layout (folder
and file names as their loaders read them), prepared through `data.tasks.TASK.paired`; and the
broken trees prepare must refuse, every problem at once, before anything is copied."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glsgn.config import ConfigError, DataConfig, PairedConfig, Params, from_dict
from glsgn.data.paired import PairedFolderError, dataset_pairs
from glsgn.data.prepare import prepare


def _save(path: Path, seed: int, size: tuple[int, int] = (40, 56)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)


def _params(task: str, paired: dict) -> Params:
    """params.yaml's data section with `task` paired as the README's recipe says."""
    return from_dict(Params, {"data": {"tasks": {task: {"paired": paired}}}})


def _listed(out: Path, split: str) -> list[dict]:
    """A prepared split's pairs.json: the pairs, referenced where the dataset lies."""
    assert not (out / split / "input").exists(), "a paired dataset is referenced, not copied"
    return json.loads((out / split / "pairs.json").read_text())


def _prepared(out: Path) -> dict[str, list[str]]:
    """{split/kind: NAME.suffix of each pair} of a prepared tree (the suffix its file has)."""
    return {
        f"{s}/{k}": sorted(e["name"] + Path(e[k]).suffix.lower() for e in _listed(out, s))
        for s in ("train", "val", "test")
        for k in ("input", "target")
    }


def _ref(out: Path, split: str, kind: str, name: str) -> Path:
    """The file a prepared split's pair NAME(.suffix) refers to, as the datasets read it."""
    (entry,) = [e for e in _listed(out, split) if e["name"] == Path(name).stem]
    return out / split / entry[kind]


def _same_pixels(a: Path, b: Path) -> bool:
    return np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


# --- the recipes (docs/datasets.md), one per dataset ----------------------------------------

RAIN13K = {"root": "4K-Rain13k", "splits": {"train": "Train", "val": None, "test": "Test"}}
UHDLL = {
    "root": "UHD-LL",
    "splits": {"train": "training_set", "val": None, "test": "testing_set"},
    "target": "gt",
}
LOL4K = {
    "root": "UHD-LOL4K",
    "splits": {"train": "train", "val": None, "test": "test"},
    "input": "low",
    "target": "high",
    "match": "sorted",
}
FOURKID = {
    "root": "4KID",
    "splits": {"train": ".", "val": None, "test": None},
    "input": "haze",
    "target": "gt",
    "match": "sorted",
}
UHDRR4K = {
    "root": "UHDRR4K/4k",
    "splits": {"train": "train", "val": None, "test": "test"},
    "input": "blended",
    "target": "transmission_layer",
    "match": "listing",
    "listing": "4k_{split}_results_list.json",
    "listing_keys": ["blended", "transmission_layer"],
}
HAZE4K = {"root": "Haze4K", "input": "hazy", "target": "clear", "input_stem": "{id}_*"}


def test_4k_rain13k_pairs_by_name_and_draws_val_from_train(tmp_path):
    raw = tmp_path / "raw"
    for split, n in (("Train", 10), ("Test", 3)):
        for i in range(n):
            _save(raw / "4K-Rain13k" / split / "input" / f"{i}.png", i)
            _save(raw / "4K-Rain13k" / split / "target" / f"{i}.png", 100 + i)
    params = _params("rain", RAIN13K)
    m = prepare("rain", params, raw, tmp_path / "out", progress=False)
    files = _prepared(tmp_path / "out")
    assert len(files["train/input"]) == 9 and len(files["val/input"]) == 1  # 10% of 10
    assert files["test/input"] == ["0.png", "1.png", "2.png"]
    assert not set(files["train/input"]) & set(files["val/input"])
    assert m["splits"]["val"].startswith("drawn from train")
    val = files["val/input"][0]
    src = raw / "4K-Rain13k" / "Train"
    assert _same_pixels(_ref(tmp_path / "out", "val", "target", val), src / "target" / val)
    assert _same_pixels(_ref(tmp_path / "out", "val", "input", val), src / "input" / val)
    # the draw is reproducible, and moves with data.seed
    again = prepare("rain", params, raw, tmp_path / "again", progress=False)
    assert [s["name"] for s in again["samples"]] == [s["name"] for s in m["samples"]]
    cfg = params.data.task("rain").paired
    draws = {dataset_pairs(cfg, raw, "rain", seed)[0]["val"][0].name for seed in range(6)}
    assert len(draws) > 1


def test_uhd_ll_pairs_input_with_gt(tmp_path):
    raw = tmp_path / "raw"
    for split, names in (("training_set", ["1_UHD_LL", "2_UHD_LL"]), ("testing_set", ["9"])):
        for j, name in enumerate(names):
            _save(raw / "UHD-LL" / split / "input" / f"{name}.JPG", j)
            _save(raw / "UHD-LL" / split / "gt" / f"{name}.JPG", 10 + j)
    prepare("lowlight", _params("lowlight", UHDLL), raw, tmp_path / "out", progress=False)
    files = _prepared(tmp_path / "out")
    assert files["test/target"] == ["9.jpg"]
    assert len(files["train/input"]) == 1 and len(files["val/input"]) == 1


def test_uhd_lol4k_and_4kid_pair_by_sorted_order_with_a_warning(tmp_path, caplog):
    raw = tmp_path / "raw"
    for split in ("train", "test"):
        for i in range(3):  # names that say nothing of their partner
            _save(raw / "UHD-LOL4K" / split / "low" / f"{split}_{i:05d}_low.png", i)
            _save(raw / "UHD-LOL4K" / split / "high" / f"{split}_{i:05d}_gt.png", 10 + i)
    for i in range(10):
        _save(raw / "4KID" / "haze" / f"{i:04d}_h.jpg", i)
        _save(raw / "4KID" / "gt" / f"{i:04d}.jpg", 10 + i)
    with caplog.at_level(logging.WARNING, logger="glsgn.data.paired"):
        prepare("lowlight", _params("lowlight", LOL4K), raw, tmp_path / "lol", progress=False)
        m = prepare("haze", _params("haze", FOURKID), raw, tmp_path / "kid", progress=False)
    assert caplog.text.count("by sorted order") == 2
    assert _prepared(tmp_path / "lol")["test/target"] == [
        f"test_{i:05d}_low.png" for i in range(3)
    ]  # a pair is named after its input
    src = raw / "UHD-LOL4K" / "test" / "high" / "test_00001_gt.png"
    assert _same_pixels(_ref(tmp_path / "lol", "test", "target", "test_00001_low.png"), src)
    # 4KID ships no splits: test (20%) and val (10%) are drawn from the one folder
    files = _prepared(tmp_path / "kid")
    assert [len(files[f"{s}/input"]) for s in ("train", "val", "test")] == [7, 1, 2]
    for s in m["samples"]:
        k = Path(s["input"]).name[:4]
        assert Path(s["target"]).name == f"{k}.jpg"  # the i-th haze with the i-th gt


def test_uhdrr4k_pairs_from_its_json_listing(tmp_path):
    root = tmp_path / "raw" / "UHDRR4K" / "4k"
    for split, n in (("train", 4), ("test", 2)):
        entries = []
        for i in range(n):
            # blended and transmission file names differ: only the listing pairs them
            entry = {
                "blended": f"{i}_blend.png",
                "transmission_layer": f"{i}_t.png",
                "reflection_layer": f"{i}_r.png",
                "alpha": 0.7,
            }
            _save(root / split / "blended" / entry["blended"], i)
            _save(root / split / "transmission_layer" / entry["transmission_layer"], 10 + i)
            _save(root / split / "reflection_mask_layer" / entry["reflection_layer"], 20 + i)
            entries.append(entry)
        _save(root / split / "blended" / "unlisted.png", 99)  # not in the listing: left out
        (root / split / f"4k_{split}_results_list.json").write_text(json.dumps(entries))
    out = tmp_path / "out"
    prepare("reflection", _params("reflection", UHDRR4K), tmp_path / "raw", out, progress=False)
    files = _prepared(out)
    assert files["test/input"] == ["0_blend.png", "1_blend.png"]
    assert files["test/target"] == ["0_blend.png", "1_blend.png"]
    assert _same_pixels(
        _ref(out, "test", "target", "1_blend.png"), root / "test" / "transmission_layer" / "1_t.png"
    )
    assert len(files["train/input"]) + len(files["val/input"]) == 4


def test_haze4k_pairs_by_a_stem_pattern(tmp_path):
    raw = tmp_path / "raw"
    for split in ("train", "val", "test"):
        for i in (1, 2):
            _save(raw / "Haze4K" / split / "hazy" / f"{i}_0.{i}9_1.56.png", i)
            _save(raw / "Haze4K" / split / "clear" / f"{i}.png", 10 + i)
    out = tmp_path / "out"
    prepare("haze", _params("haze", HAZE4K), raw, out, progress=False)
    assert _prepared(out)["val/input"] == ["1.png", "2.png"]
    assert _same_pixels(
        _ref(out, "val", "target", "2.png"), raw / "Haze4K" / "val" / "clear" / "2.png"
    )


# --- broken trees: refused, every problem named at once, nothing written --------------------


def test_a_broken_tree_is_refused_with_every_problem_and_nothing_copied(tmp_path):
    raw = tmp_path / "raw"
    train, test = raw / "4K-Rain13k" / "Train", raw / "4K-Rain13k" / "Test"
    for i in range(4):
        _save(train / "input" / f"{i}.png", i)
        _save(train / "target" / f"{i}.png", i)
    _save(train / "input" / "lonely.png", 7)  # missing partner
    _save(train / "input" / "3.jpg", 8)  # duplicate stem
    _save(test / "input" / "a.png", 1)
    _save(test / "target" / "a.png", 1, size=(40, 60))  # size mismatch
    _save(test / "input" / "b.png", 2)
    (test / "target" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # unreadable
    out = tmp_path / "out"
    with pytest.raises(PairedFolderError) as e:
        prepare("rain", _params("rain", RAIN13K), raw, out, progress=False)
    msg = str(e.value)
    assert "lonely.png: input has no target for 'lonely'" in msg
    assert f"3.png: input name '3' also used by {train / 'input' / '3.jpg'}" in msg
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["raw"]
    # once the names are fixed, the pixels are checked: both bad test pairs in one error
    (train / "input" / "lonely.png").unlink()
    (train / "input" / "3.jpg").unlink()
    with pytest.raises(PairedFolderError) as e:
        prepare("rain", _params("rain", RAIN13K), raw, out, progress=False)
    msg = str(e.value)
    assert "2 problem(s)" in msg and "a.png: size 56x40 differs from its target" in msg
    assert f"{test / 'target' / 'b.png'}" in msg
    assert not out.exists()


def test_a_listing_naming_a_missing_file_is_refused(tmp_path):
    root = tmp_path / "raw" / "UHDRR4K" / "4k"
    for split in ("train", "test"):
        _save(root / split / "blended" / "0.png", 0)
        _save(root / split / "transmission_layer" / "0.png", 1)
        _save(root / split / "transmission_layer" / "1.png", 1)
        _save(root / split / "blended" / "2.png", 0)
        _save(root / split / "transmission_layer" / "2.png", 1)
        entries = [
            {"blended": "0.png", "transmission_layer": "0.png"},
            {"blended": "1.png", "transmission_layer": "1.png"},  # no blended 1.png
            {"blended": "0.png", "transmission_layer": "2.png"},  # 0.png listed twice
            {"blended": "2.png"},  # no transmission key
        ]
        (root / split / f"4k_{split}_results_list.json").write_text(json.dumps(entries))
    (root / "test" / "4k_test_results_list.json").write_text("[{")
    with pytest.raises(PairedFolderError) as e:
        prepare(
            "reflection", _params("reflection", UHDRR4K), tmp_path / "raw", tmp_path / "o", False
        )
    msg = str(e.value)
    listing = root / "train" / "4k_train_results_list.json"
    assert f"{listing}, entry 1: {root / 'train' / 'blended' / '1.png'}: no such file" in msg
    assert f"{listing}, entry 2: input name '0' also listed in entry 0" in msg
    assert f"{listing}, entry 3: expected a mapping with file names under" in msg
    assert "4k_test_results_list.json: not a readable JSON listing" in msg
    assert not (tmp_path / "o").exists()


def test_sorted_order_needs_equal_counts_and_a_root(tmp_path):
    raw = tmp_path / "raw"
    for i in range(3):
        _save(raw / "4KID" / "haze" / f"{i}.jpg", i)
    for i in range(2):
        _save(raw / "4KID" / "gt" / f"{i}.jpg", i)
    with pytest.raises(PairedFolderError, match="3 inputs but 2 targets"):
        dataset_pairs(_params("haze", FOURKID).data.task("haze").paired, raw, "haze", 0)
    with pytest.raises(
        PairedFolderError, match=r"nowhere: no such folder \(data.tasks.haze.paired.root\)"
    ):
        dataset_pairs(PairedConfig(root="nowhere"), raw, "haze", 0)


@pytest.mark.parametrize(
    "paired, message",
    [
        ({"match": "listing"}, "data.tasks.rain.paired.listing: expected a JSON file name"),
        ({"listing": "x.json"}, "data.tasks.rain.paired.listing: expected a JSON file name"),
        ({"root": "../elsewhere"}, "data.tasks.rain.paired.root: expected a path relative"),
        ({"input_stem": "hazy"}, r"data.tasks.rain.paired.input_stem: expected a stem pattern"),
        ({"splits": {"train": None}}, r"data.tasks.rain.paired.splits.train: .*\(got None\)"),
        ({"val_fraction": 0.9}, r"data.tasks.rain.paired.val_fraction: .*\(got 0.9\)"),
        ({"order": "sorted"}, "data.tasks.rain.paired.order: unknown key"),
    ],
)
def test_paired_settings_are_validated_by_key(paired, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Params, {"data": {"tasks": {"rain": {"paired": paired}}}})


def test_a_paired_task_takes_the_defaults_it_does_not_set():
    data = from_dict(DataConfig, {"tasks": {"mine": {"paired": {}}}}, "data")
    assert data.task("mine").paired == PairedConfig() and data.task("mine").degradation is None
    assert PairedConfig().input == "input" and PairedConfig().splits.test == "test"
    with pytest.raises(ConfigError, match=r"data.tasks.mine.degradation: .*\(got 'rain'\)"):
        from_dict(DataConfig, {"tasks": {"mine": {"paired": {}, "degradation": "rain"}}}, "data")
