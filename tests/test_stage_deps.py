"""Every stage of dvc.yaml depends on the code it runs: each glsgn module its command imports,
lazily imported ones and params.yaml's validation included, is one of its deps or under one.

Exempt: glsgn/__init__.py, the package's docstring and __version__ (checkpoints record it as
metadata only); every module imports it, and a version bump should not rerun the pipeline."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from . import conftest

ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: import what the command imports, read params.yaml as every stage
# does, and list the glsgn modules that are then loaded.
_PROBE = """
import importlib, json, sys
from glsgn.config import load_params
for name in sys.argv[1:]:
    importlib.import_module(name)
load_params("params.yaml")
print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items()
                        if n.split(".")[0] == "glsgn" and n != "glsgn"
                        and getattr(m, "__file__", None))))
"""


def _subcommand_imports(command: str) -> list[str]:
    """The modules cli.py's `cmd_COMMAND` imports when it runs."""
    tree = ast.parse((ROOT / "glsgn/cli.py").read_text())
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == f"cmd_{command}"]
    return [f"glsgn.{n.module}" for n in ast.walk(fn) if isinstance(n, ast.ImportFrom)]


def _entry_modules(cmd: str) -> list[str]:
    """What a stage's command runs, as importable module names."""
    words = cmd.split()
    if words[0] == "glsgn":
        return ["glsgn.cli", *_subcommand_imports(words[1])]
    if words[0] == "python":  # a script: its own imports
        return [a.removesuffix(".py").replace("/", ".") for a in words[1:2]]
    (notebook,) = [w for w in words if w.startswith("notebooks/")]
    cells = json.loads((ROOT / notebook).read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    tree = ast.parse("\n".join(ln for ln in code.splitlines() if not ln.startswith(("%", "!"))))
    return [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]


def test_every_stage_depends_on_the_code_it_runs():
    seen = set()
    for name, stage in conftest.pipeline_stages().items():
        entries = [
            m for m in _entry_modules(stage["cmd"]) if m.split(".")[0] in ("glsgn", "benchmarks")
        ]
        if tuple(entries) in seen:
            continue  # one check per distinct command body (the matrix stages share theirs)
        seen.add(tuple(entries))
        out = subprocess.run(
            [sys.executable, "-c", _PROBE, *entries], cwd=ROOT, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        deps = [ROOT / d for d in stage["deps"]]
        files = [Path(f) for f in json.loads(out.stdout.splitlines()[-1])]
        if entries[0].startswith("benchmarks."):
            files.append(ROOT / stage["cmd"].split()[1])
        missing = [
            str(f.relative_to(ROOT))
            for f in files
            if not any(f == d or d in f.parents for d in deps)
        ]
        assert not missing, f"{name} runs {missing} but does not depend on them"


@pytest.mark.parametrize("planted", ["glsgn/variants.py", "glsgn/data"])
def test_the_check_sees_a_missing_dep(planted, monkeypatch):
    """Remove one dep from every stage: the check names it."""
    real = conftest.pipeline_stages

    def without():
        return {
            n: {**s, "deps": {d for d in s["deps"] if str(d) != planted}} for n, s in real().items()
        }

    monkeypatch.setattr(conftest, "pipeline_stages", without)
    with pytest.raises(AssertionError, match=planted.split("/")[-1]):
        test_every_stage_depends_on_the_code_it_runs()


def test_a_resumed_run_keeps_its_curves_under_dvc():
    """DVC deletes a stage's outputs before running it again, unless they persist: a run
    killed and resumed by `dvc repro` would lose the curves it logged before its checkpoint."""
    import yaml

    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]
    live = [o for o in stage["outs"] + stage["plots"] if "dvclive" in str(o)]
    assert len(live) == 2 and all(next(iter(o.values())).get("persist") for o in live), live
