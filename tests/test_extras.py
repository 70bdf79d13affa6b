"""`pip install glsgn` (no extras) gives the model, `glsgn restore` and the CLI: the core must
import and restore without the `pipeline` extra's packages (dvc, dvclive, papermill, Jupyter,
matplotlib), which only `dvc repro`, the notebooks and their figures use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glsgn.checkpoint import save_checkpoint
from glsgn.model import build_model

from .conftest import TINY

ROOT = Path(__file__).resolve().parent.parent

# Import names of the pipeline extra's packages and of what only they pull in.
PIPELINE_MODULES = [
    "dvc",
    "dvclive",
    "papermill",
    "jupyterlab",
    "jupyter_server",
    "jupyter_client",
    "jupyter_core",
    "ipykernel",
    "IPython",
    "nbformat",
    "nbclient",
    "matplotlib",
]

# Runs in a fresh interpreter: every pipeline module is made uninstalled (ModuleNotFoundError,
# as a core-only install raises, so optional imports take their fallbacks), then the core is
# imported, its CLI's help printed and one image restored.
_PROBE = """
import importlib.abc, json, sys

BLOCKED = set(json.loads(sys.argv[1]))

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

for name in [m for m in sys.modules if m.partition(".")[0] in BLOCKED]:
    del sys.modules[name]
sys.meta_path.insert(0, NotInstalled())

import glsgn.checkpoint, glsgn.cli, glsgn.config, glsgn.data.io, glsgn.model, glsgn.restore

for argv in (["restore", "--help"], ["train", "--help"], ["evaluate", "--help"]):
    try:
        glsgn.cli.main(argv)
    except SystemExit as e:
        assert e.code == 0, (argv, e.code)
rc = glsgn.cli.main(sys.argv[2:])
assert rc == 0, rc
loaded = sorted({m.partition(".")[0] for m in sys.modules} & BLOCKED)
assert not loaded, loaded
print("core ok")
"""


def test_pyproject_keeps_the_pipeline_out_of_the_core():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        d.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()
        for d in project["dependencies"]
    }
    pipeline = {"dvc", "dvclive", "papermill", "jupyterlab", "ipykernel", "matplotlib"}
    assert not names & pipeline, names & pipeline
    assert {"torch", "pydantic", "pyyaml"} <= names
    extras = project["optional-dependencies"]
    assert pipeline <= {d.split(">")[0] for d in extras["pipeline"]}
    assert "glsgn[pipeline]" in extras["dev"]  # `make setup` still installs everything


@pytest.mark.parametrize("blocked", [PIPELINE_MODULES], ids=["without-pipeline-extra"])
def test_core_imports_and_restores_without_the_pipeline_extra(tmp_path, blocked):
    ckpt = tmp_path / "identity.pt"
    save_checkpoint(ckpt, build_model(TINY))
    image = tmp_path / "in" / "photo.png"
    image.parent.mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(image)
    restore = ["restore", str(image), "-o", str(tmp_path / "out"), "--checkpoint", str(ckpt)]
    restore += ["--quiet", "--device", "cpu", "--params", str(tmp_path / "no-params.yaml")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    r = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(blocked), *restore],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "core ok" in r.stdout and "usage: glsgn restore" in r.stdout
    assert (tmp_path / "out" / "photo.png").is_file()
