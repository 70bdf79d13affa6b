"""Profiles hold only their differences from params.yaml: `glsgn profile DIR` composes DIR's
params.yaml and dvc.yaml, the committed ones are current, each profile is a DVC project of its
own, and a profile whose only run is a user's paired task runs end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from glsgn.cli import main
from glsgn.config import ConfigError, Params, from_dict
from glsgn.data.io import write_image
from glsgn.profiles import compose, write_profile

from .conftest import pipeline_stages

ROOT = Path(__file__).resolve().parents[1]
# every committed profile: a folder (one or two levels down) with a profile.yaml
PROFILES = sorted(
    str(f.parent.relative_to(ROOT))
    for pattern in ("*/profile.yaml", "*/*/profile.yaml")
    for f in ROOT.glob(pattern)
)


def test_the_profiles_are_found():
    assert {"evidence", "evidence/gpu", "gpu", "uhr", "uhr/gpu"} <= set(PROFILES)


def test_compose_sets_each_dotted_key_and_nothing_else():
    base = {"train": {"steps": 24, "lr": 0.002}, "data": {"tasks": {"a": {}, "b": {}}}}
    out = compose(base, {"train.steps": 100, "data.tasks": {"c": {}}, "figures.run": "c-full"})
    assert out == {
        "train": {"steps": 100, "lr": 0.002},
        "data": {"tasks": {"c": {}}},  # a mapping replaces the mapping: no a, no b
        "figures": {"run": "c-full"},
    }
    assert base["train"]["steps"] == 24  # a copy
    with pytest.raises(ConfigError, match=r"p.yaml: train.steps.x: train.steps is not a mapping"):
        compose(base, {"train.steps.x": 1}, "p.yaml")


@pytest.mark.parametrize("folder", PROFILES)
def test_committed_profiles_are_current_and_valid(folder):
    assert main(["profile", str(ROOT / folder), "--check"]) == 0
    params = yaml.safe_load((ROOT / folder / "params.yaml").read_text())
    differences = yaml.safe_load((ROOT / folder / "profile.yaml").read_text())
    expected = compose(yaml.safe_load((ROOT / "params.yaml").read_text()), differences)
    if "data.raw" not in differences:  # the repository's raw data, seen from the profile
        expected["data"]["raw"] = "../" * len(Path(folder).parts) + expected["data"]["raw"]
    assert params == expected
    from_dict(Params, params)
    assert (ROOT / folder / ".dvc" / "config").is_file()  # a DVC project of its own


def test_a_changed_default_reaches_the_profile_and_a_bad_one_names_its_file(tmp_path):
    (tmp_path / "p").mkdir()
    shutil.copy(ROOT / "dvc.yaml", tmp_path)
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    base["train"]["lr"] = 0.001
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "p/profile.yaml").write_text("train.steps: 7\n")
    assert set(write_profile(tmp_path / "p", tmp_path)) == {
        tmp_path / "p/params.yaml",
        tmp_path / "p/dvc.yaml",
    }
    made = yaml.safe_load((tmp_path / "p/params.yaml").read_text())
    assert made["train"]["lr"] == 0.001 and made["train"]["steps"] == 7
    assert write_profile(tmp_path / "p", tmp_path, check=True) == []
    (tmp_path / "p/profile.yaml").write_text("train.stepz: 7\n")
    with pytest.raises(ConfigError, match=r"p/profile.yaml: train.stepz: unknown key"):
        write_profile(tmp_path / "p", tmp_path)


def test_the_main_pipeline_holds_no_profile_stage():
    """`dvc metrics show` / `dvc exp show` of the main pipeline read its own runs only."""
    names = list(pipeline_stages())  # another dvc.yaml's stage would be "DIR/dvc.yaml:NAME"
    assert names and not [n for n in names if ":" in n or n.startswith(("evidence", "gpu"))]


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    r = subprocess.run(
        cmd,
        cwd=cwd,
        env=env | {"DVC_NO_ANALYTICS": "1"},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_profile_whose_only_run_is_the_users_paired_task(tmp_path):
    """One task, no reflection, one variant: the user's folder of pairs, outside the
    repository, in; dvc repro runs every stage (the ablation notebook says there is nothing to
    contrast), copies no pair, then runs nothing."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(ROOT), str(clone)], tmp_path)
    pairs = tmp_path / "pairs"
    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        for kind in ("input", "target"):
            (pairs / f"mine/{split}/{kind}").mkdir(parents=True)
        for i in range(n):
            clean = rng.random((64, 96, 3)).astype(np.float32)
            write_image(pairs / f"mine/{split}/target/p{i}.png", clean)
            write_image(pairs / f"mine/{split}/input/p{i}.png", 0.6 * clean + 0.3)
    dvc = [sys.executable, "-m", "dvc"]
    (clone / "mine").mkdir()
    tiny = {
        "data.raw": str(pairs),  # read where it lies: an external dependency, never copied
        "data.tasks": {"mine": {"paired": {}}},
        "train.variant_tasks": [],
        "train.term_tasks": [],
        "model.widths": [4, 8, 16],
        "model.cue_channels": 4,
        "model.fusion_channels": 4,
        "model.patch_size": 32,
        "train.steps": 2,
        "train.warmup": 1,
        "train.checkpoint_every": 2,
        "train.val_every": 2,
        "train.curve_every": 2,
        "loss.backbone_layers": [1],
    }
    (clone / "mine/profile.yaml").write_text(yaml.safe_dump(tiny))
    _run([sys.executable, "-m", "glsgn", "profile", "mine"], clone)
    _run([*dvc, "init", "--subdir", "-q"], clone / "mine")
    out = _run([*dvc, "repro"], clone / "mine")
    assert "train@mine--full-0" in out and "reflection" not in out
    scores = json.loads((clone / "mine/metrics/mine-full/seed0.json").read_text())
    assert np.isfinite(scores["psnr"])
    assert json.loads((clone / "mine/reports/ablation.json").read_text()) == []
    figures = {p.name for p in (clone / "mine/reports/figures").rglob("*.png")}
    assert {"no_contrast.png", "attention.png", "mine.png"} <= figures
    listed = json.loads((clone / "mine/data/prepared/mine/test/pairs.json").read_text())
    assert (clone / "mine/data/prepared/mine/test" / listed[0]["input"]).resolve() == (
        pairs / "mine/test/input/p0.png"
    )
    assert not list((clone / "mine/data/prepared").rglob("*.png"))  # nothing copied
    assert "Running stage" not in _run([*dvc, "repro"], clone / "mine")
