"""A fresh clone (no DVC cache, no remote, no network) runs the data stages of the pipeline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1")  # fmt: skip
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_fresh_clone_repro_of_the_data_stages(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(ROOT), str(clone)], tmp_path)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["data"].update(
        size=[64, 96], reference_size=96, splits={"train": 2, "val": 1, "test": 1}
    )
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc = [sys.executable, "-m", "dvc"]
    stages = ["data.dvc"] + [f"prepare@{t}" for t in params["data"]["tasks"]]
    out = _run([*dvc, "repro", *stages], clone)
    assert "Importing 'assets/starter' -> 'data/raw'" in out
    assert len(list((clone / "data/raw").glob("*.png"))) == 3
    for task in params["data"]["tasks"]:
        for split, n in (("train", 2), ("val", 1), ("test", 1)):
            assert len(list((clone / f"data/prepared/{task}/{split}/input").iterdir())) == n
        assert (clone / f"data/prepared/{task}/manifest.json").is_file()
    again = _run([*dvc, "repro", *stages], clone)
    assert "Running stage" not in again and "Importing" not in again
