"""A fresh clone (no DVC cache, no remote, no network) runs the whole pipeline with a tiny
profile: import, prepare, train, evaluate, benchmark, and every notebook through papermill,
each writing its figures; then `dvc metrics show` tabulates it and a second `dvc repro` runs
nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1")  # fmt: skip
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


# The figures each notebook writes with the tiny profile's runs: ablation bars only where a task
# has more than one variant, training curves only for tasks with runs.
FIGURES = {
    "dataset": ["dataset"],
    "ablation": ["reflection_psnr", "reflection_ssim", "reflection_lpips"],
    "attention": ["attention", "pyramid"],
    "qualitative": ["reflection", "rain", "haze"],
    "efficiency": ["efficiency"],
    "training": ["reflection", "haze"],
}


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_fresh_clone_repro_of_the_whole_pipeline(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(ROOT), str(clone)], tmp_path)
    p = yaml.safe_load((clone / "params.yaml").read_text())
    p["model"].update(widths=[4, 8, 16], cue_channels=4, fusion_channels=4, fusion_blocks=1,
                      patch_size=32)  # fmt: skip
    p["data"].update(size=[64, 96], reference_size=96, splits={"train": 2, "val": 1, "test": 1})
    p["train"].update(steps=2, crop=32, warmup=1, checkpoint_every=1, val_every=2, log_every=1,
                      runs={"reflection-full": {"task": "reflection", "variant": "full"},
                            "reflection-no_content": {"task": "reflection",
                                                      "variant": "no_content"},
                            "haze-fullres": {"task": "haze", "variant": "fullres"}})  # fmt: skip
    p["loss"]["backbone_layers"] = [1]
    p["benchmark"]["sizes"] = ["96x64", "192x128"]
    (clone / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    dvc = [sys.executable, "-m", "dvc"]
    out = _run([*dvc, "repro"], clone)
    assert "Importing 'assets/starter' -> 'data/raw'" in out
    for task in p["data"]["tasks"]:
        assert len(list((clone / f"data/prepared/{task}/train/input").iterdir())) == 2
    for task, variant in (("reflection", "full"), ("haze", "fullres")):
        m = json.loads((clone / f"metrics/{task}/{variant}.json").read_text())
        assert m["n_images"] == 1 and m["psnr"] > 0 and m["train_steps"] == 2
    bench = json.loads((clone / "reports/efficiency.json").read_text())
    assert [(r["model"], r["mode"], r["size"]) for r in bench] == [
        (m, mode, s) for s in ("96x64", "192x128")
        for m, mode in (("glsgn", "stream"), ("fullres", "stream"), ("fullres", "whole"))
    ]  # fmt: skip
    assert all(r["seconds"] > 0 and r["peak_rss_mb"] > 100 for r in bench)
    for name, figures in FIGURES.items():
        executed = clone / f"reports/notebooks/{name}.ipynb"
        assert "papermill" in json.loads(executed.read_text())["metadata"], executed
        written = sorted(p.name for p in (clone / f"reports/figures/{name}").iterdir())
        assert written == sorted(f"{f}.{e}" for f in figures for e in ("pdf", "png")), name
        for f in figures:
            w, h = Image.open(clone / f"reports/figures/{name}/{f}.png").size
            assert 300 < w < 4000 and 150 < h < 4000, (name, f, w, h)
    shown = json.loads(_run([*dvc, "metrics", "show", "--json"], clone))
    assert "metrics/reflection/full.json" in json.dumps(shown)
    again = _run([*dvc, "repro"], clone)
    assert "Running stage" not in again and "Importing" not in again
    # `make lab`: JupyterLab starts the kernel in notebooks/, and the notebook still finds the
    # pipeline's files with its default parameters.
    _run([sys.executable, "-m", "papermill", "-k", "glsgn", "--cwd", "notebooks",
          "notebooks/efficiency.ipynb", str(tmp_path / "lab.ipynb")], clone)  # fmt: skip
