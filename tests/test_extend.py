"""Extending glsgn in one place: a new degradation (one function, one registry line), a paired
task (one entry of data.tasks) and a fifth consistency term (one function with its name) are
prepared, trained, logged, evaluated and ablated with no other edit."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from glsgn import losses
from glsgn.config import ConfigError, DataConfig, LossConfig, Params, TrainConfig, from_dict
from glsgn.data import synthesis
from glsgn.data.io import write_image
from glsgn.data.prepare import prepare
from glsgn.evaluate import evaluate
from glsgn.results import ablation
from glsgn.train import train
from glsgn.variants import runs, variants

from .conftest import TINY
from .test_data import SMALL, _photo


@pytest.fixture
def registries():
    """The registries as they were, after the test (a test's registration does not leak)."""
    saved = dict(synthesis.DEGRADATIONS), dict(losses.CONSISTENCY)
    yield
    for registry, before in zip((synthesis.DEGRADATIONS, losses.CONSISTENCY), saved, strict=True):
        registry.clear()
        registry.update(before)


def _params(tasks: dict, consistency: dict | None = None, **train) -> Params:
    t = dict(variants=(), variant_tasks=(), term_tasks=(), steps=2, batch_size=1, warmup=1)
    t |= dict(checkpoint_every=2, val_every=2, log_every=1)
    loss = LossConfig(backbone_layers=(1,))
    return Params(
        model=TINY,
        data=dataclasses.replace(SMALL, tasks=tasks),
        train=TrainConfig(**{**t, **train}),
        loss=dataclasses.replace(loss, consistency=consistency or loss.consistency),
    )


def _metrics(root: Path, run: str) -> dict:
    return json.loads((root / f"metrics/{run}/seed0.json").read_text())


def test_a_new_degradation_is_one_function_and_one_registry_line(tmp_path, registries):
    @synthesis.degradation("fog_stripes")
    def fog_stripes(clean: synthesis.Clean, seed: int, settings: None) -> synthesis.Degraded:
        rng = np.random.default_rng(seed)
        stripes = (np.arange(clean.image.shape[1]) % 8 < 4).astype(np.float32)[None, :, None]
        degraded = np.clip(clean.image + rng.uniform(0.1, 0.3) * stripes, 0, 1)
        return synthesis.Degraded(degraded, clean.image, degraded - clean.image)

    params = _params({"stripes": {"degradation": "fog_stripes"}})
    m = prepare("stripes", params, tmp_path / "raw", tmp_path / "data/prepared/stripes", False)
    assert m["source"] == "synthetic" and len(m["samples"]) == 4
    assert list(runs(params)) == ["stripes-full"]
    train("stripes-full", params, tmp_path, progress=False)
    assert np.isfinite(evaluate("stripes-full", params, tmp_path, progress=False)["psnr"])


def test_an_unregistered_degradation_is_refused_naming_the_task():
    with pytest.raises(ConfigError, match=r"data\.tasks\.snow\.degradation.*'snowfall'"):
        from_dict(DataConfig, {"tasks": {"snow": {"degradation": "snowfall"}}}, "data")
    with pytest.raises(ConfigError, match=r"data\.tasks\.snow\.degradation.*'snow'"):
        from_dict(DataConfig, {"tasks": {"snow": {}}}, "data")  # {}: the task's own name


def test_a_users_paired_folder_is_one_entry_of_data_tasks(tmp_path):
    raw = tmp_path / "raw"
    for split, n in (("train", 3), ("val", 1), ("test", 1)):
        for kind in ("input", "target"):
            (raw / f"mine/{split}/{kind}").mkdir(parents=True)
        for i in range(n):
            clean = _photo(96, 160, seed=10 * i + len(split))
            write_image(raw / f"mine/{split}/target/{split}{i}.png", clean)
            write_image(raw / f"mine/{split}/input/{split}{i}.png", clean * 0.7 + 0.2)
    params = _params({"mine": {"paired": {}}})
    m = prepare("mine", params, raw, tmp_path / "data/prepared/mine", progress=False)
    assert m["source"] == "paired" and len(m["samples"]) == 5
    train("mine-full", params, tmp_path, progress=False)
    metrics = evaluate("mine-full", params, tmp_path, progress=False)
    assert metrics["task"] == "mine" and np.isfinite(metrics["psnr"])


def test_a_fifth_consistency_term_is_trained_logged_and_ablated(tmp_path, registries):
    @losses.consistency_term("global_brightness", 0.2, "global brightness term off")
    def global_brightness(loss, out, batch) -> torch.Tensor | None:
        """B_out's mean brightness agrees with B_g's (a toy term)."""
        if out.b_global is None:
            return None
        return (out.b_out.mean() - out.b_global.mean()).abs()

    # Registered after import, the term is in the defaults, the table and the runs.
    assert LossConfig().consistency["global_brightness"] == 0.2
    assert variants()["no_global_brightness"].group == "term"
    weights = {"content": 0.1, "global_brightness": 0.2}  # params.yaml's loss.consistency
    params = _params({"reflection": {}}, weights, term_tasks=("reflection",), seeds=(0, 1))
    made = list(runs(params))
    assert made == ["reflection-full", "reflection-no_content", "reflection-no_global_brightness"]
    prepare("reflection", params, tmp_path / "raw", tmp_path / "data/prepared/reflection", False)
    for run in made:
        for seed in (0, 1):
            train(run, params, tmp_path, seed=seed, progress=False)
            evaluate(run, params, tmp_path, seed=seed, progress=False)

    def logged(run: str) -> Path:
        return tmp_path / f"dvclive/{run}/seed0/plots/metrics/train/global_brightness.tsv"

    assert logged("reflection-full").is_file()
    assert not logged("reflection-no_global_brightness").exists()
    table = ablation(params, tmp_path / "metrics", n_resamples=50)
    rows = {(r.variant, r.metric) for r in table}
    assert ("no_global_brightness", "psnr") in rows and ("no_content", "ssim") in rows
