"""A fresh clone (no DVC cache, no remote, no network) runs the whole pipeline with a tiny
profile: import, prepare, train, evaluate, benchmark, and every notebook through papermill,
each writing its figures; then `dvc metrics show` tabulates it and a second `dvc repro` runs
nothing (tests/test_stage_deps.py: each stage's deps name the code it runs); `make
docs-figures` copies the README's figures with scripts/docs_copy.py."""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(
        os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", DVC_NO_ANALYTICS="1"
    )
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


# The figures each notebook writes with the tiny profile's runs: ablation figures only where a
# task trains more than one variant.
TASKS = ("reflection", "rain", "haze")
FIGURES = {
    "dataset": ["dataset", *(f"{t}-zoom" for t in TASKS)],
    "ablation": [  # rain trains full alone: nothing to contrast, no figure
        f"{task}_{figure}"
        for task in ("reflection", "haze")
        for figure in ("psnr", "ssim", "lpips", "psnr_forest", "ssim_forest")
    ],
    "attention": ["attention", "pyramid"],
    "qualitative": list(TASKS),
    "efficiency": ["efficiency"],
    "training": [*TASKS, *(f"{t}-learning-curve" for t in TASKS)],
}
TABLES = {"training": [f"{t}-learning-curve.csv" for t in TASKS]}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_fresh_clone_repro_of_the_whole_pipeline(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(ROOT), str(clone)], tmp_path)
    p = yaml.safe_load((clone / "params.yaml").read_text())
    p["model"].update(
        widths=[4, 8, 16], cue_channels=4, fusion_channels=4, fusion_blocks=1, patch_size=32
    )
    p["data"].update(size=[64, 96], reference_size=96, splits={"train": 2, "val": 1, "test": 1})
    p["data"]["tasks"] = {"reflection": {}, "rain": {}, "haze": {}}
    p["train"].update(
        steps=2,
        crop=32,
        warmup=1,
        checkpoint_every=1,
        val_every=2,
        log_every=1,
        variants=["fullres"],
        variant_tasks=["haze"],
        term_tasks=["reflection"],
    )
    p["loss"]["consistency"] = {
        "content": 0.1
    }  # runs: TASK-full, haze-fullres, reflection-no_content
    p["loss"]["backbone_layers"] = [1]
    p["benchmark"]["sizes"] = ["96x64", "192x128"]
    (clone / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    dvc = [sys.executable, "-m", "dvc"]
    out = _run([*dvc, "repro"], clone)
    assert "Importing 'assets/starter' -> 'data/raw'" in out
    for task in p["data"]["tasks"]:
        assert len(list((clone / f"data/prepared/{task}/train/input").iterdir())) == 2
    for run in ("reflection-full", "reflection-no_content", "haze-fullres"):
        m = json.loads((clone / f"metrics/{run}/seed0.json").read_text())
        record = json.loads((clone / f"metrics/{run}/seed0.record.json").read_text())
        assert record["n_images"] == 1 and m["psnr"] > 0 and record["train_steps"] == 2
    table = json.loads((clone / "reports/ablation.json").read_text())
    assert {(r["task"], r["variant"]) for r in table} == {
        ("reflection", "no_content"),
        ("haze", "fullres"),
    }
    bench = json.loads((clone / "reports/efficiency.json").read_text())
    how, bench = bench["protocol"], bench["results"]
    assert how["statistic"] == "best (minimum) of 1 run(s)" and how["device"] == "cpu"
    assert [(r["model"], r["mode"], r["size"]) for r in bench] == [
        (m, mode, s)
        for s in ("96x64", "192x128")
        for m, mode in (("glsgn", "stream"), ("fullres", "stream"), ("fullres", "whole"))
    ]
    assert all(r["seconds"] > 0 and r["peak_rss_mb"] > 100 for r in bench)
    for name, figures in FIGURES.items():
        executed = clone / f"reports/notebooks/{name}.ipynb"
        assert "papermill" in json.loads(executed.read_text())["metadata"], executed
        written = sorted(p.name for p in (clone / f"reports/figures/{name}").iterdir())
        expected = [f"{f}.{e}" for f in figures for e in ("pdf", "png")] + TABLES.get(name, [])
        assert written == sorted(expected), name
        for f in figures:
            w, h = Image.open(clone / f"reports/figures/{name}/{f}.png").size
            assert 300 < w < 4000 and 150 < h < 4000, (name, f, w, h)
    # The first JSON document; DVC then says which metrics files no run has written yet (the
    # GPU evidence profile's, in a clone).
    shown, _ = json.JSONDecoder().raw_decode(_run([*dvc, "metrics", "show", "--json"], clone))
    assert "metrics/reflection-full/seed0.json" in json.dumps(shown)
    again = _run([*dvc, "repro"], clone)
    assert "Running stage" not in again and "Importing" not in again
    # `make lab`: JupyterLab starts the kernel in notebooks/, and the notebook still finds the
    # pipeline's files with its default parameters.
    _run(
        [
            sys.executable,
            "-m",
            "papermill",
            "-k",
            "glsgn",
            "--cwd",
            "notebooks",
            "notebooks/efficiency.ipynb",
            str(tmp_path / "lab.ipynb"),
        ],
        clone,
    )


def test_docs_copy_scales_wide_figures_down(tmp_path):
    docs_copy = runpy.run_path(str(ROOT / "scripts/docs_copy.py"))["docs_copy"]
    Image.fromarray(np.full((300, 3000, 3), 200, np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray(np.full((100, 200, 3), 50, np.uint8)).save(tmp_path / "small.png")
    out = docs_copy(tmp_path / "wide.png", tmp_path / "docs" / "wide.jpg", max_width=1000)
    assert Image.open(out).size == (1000, 100) and Image.open(out).format == "JPEG"
    assert np.asarray(Image.open(out)).mean() == pytest.approx(200, abs=1)
    out = docs_copy(tmp_path / "small.png", tmp_path / "docs" / "small.jpg", max_width=1000)
    assert Image.open(out).size == (200, 100)
    # the command line that `make docs-figures` runs
    _run(
        [
            sys.executable,
            str(ROOT / "scripts/docs_copy.py"),
            "wide.png",
            "cli/wide.jpg",
            "--max-width",
            "600",
        ],
        tmp_path,
    )
    assert Image.open(tmp_path / "cli/wide.jpg").size == (600, 60)
    # that `make docs-figures` runs it: tests/test_notebooks.py (the README's figures)
