"""A fresh clone (no DVC cache, no remote, no network) runs the whole pipeline with a tiny
profile: import, prepare, train, evaluate, benchmark, and every notebook through papermill,
each writing its figures; then `dvc metrics show` tabulates it and a second `dvc repro` runs
nothing. Each stage's deps name every glsgn module it runs, so that editing one reruns the
stage; `make docs-figures` copies the README's figures with scripts/docs_copy.py."""

from __future__ import annotations

import ast
import json
import os
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml
from PIL import Image

from glsgn.config import load_params

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(
        os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", DVC_NO_ANALYTICS="1"
    )
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


# The figures each notebook writes with the tiny profile's runs: ablation bars only where a task
# has more than one variant, training curves only for tasks with runs.
FIGURES = {
    "dataset": ["dataset"],
    "ablation": [
        "reflection_psnr",
        "reflection_ssim",
        "reflection_lpips",
        "reflection_psnr_forest",
        "reflection_ssim_forest",
    ],
    "attention": ["attention", "pyramid"],
    "qualitative": ["reflection", "rain", "haze"],
    "efficiency": ["efficiency"],
    "training": ["reflection", "haze", "reflection-learning-curve", "haze-learning-curve"],
}
TABLES = {"training": ["reflection-learning-curve.csv", "haze-learning-curve.csv"]}


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
    p["train"].update(
        steps=2,
        crop=32,
        warmup=1,
        checkpoint_every=1,
        val_every=2,
        log_every=1,
        runs={
            "reflection-full": {"task": "reflection", "variant": "full"},
            "reflection-no_content": {"task": "reflection", "variant": "no_content"},
            "haze-fullres": {"task": "haze", "variant": "fullres"},
        },
    )
    p["loss"]["backbone_layers"] = [1]
    p["benchmark"]["sizes"] = ["96x64", "192x128"]
    (clone / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    dvc = [sys.executable, "-m", "dvc"]
    out = _run([*dvc, "repro"], clone)
    assert "Importing 'assets/starter' -> 'data/raw'" in out
    for task in p["data"]["tasks"]:
        assert len(list((clone / f"data/prepared/{task}/train/input").iterdir())) == 2
    for run in ("reflection-full", "haze-fullres"):
        m = json.loads((clone / f"metrics/{run}/seed0.json").read_text())
        assert m["n_images"] == 1 and m["psnr"] > 0 and m["train_steps"] == 2
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


# Exempt from the deps: glsgn/__init__.py holds the package's docstring and __version__ (which
# checkpoints record as metadata only), and every module imports it: a version bump should not
# rerun the pipeline. glsgn/__main__.py is `python -m glsgn`; the stages run the `glsgn`
# console script (glsgn.cli:main), which does not import it.
EXEMPT = {"glsgn/__init__.py", "glsgn/__main__.py"}


def _module_file(name: str) -> Path | None:
    """glsgn.x.y -> glsgn/x/y.py or glsgn/x/y/__init__.py under ROOT; None if neither exists."""
    base = ROOT.joinpath(*name.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _glsgn_imports(nodes: list[ast.stmt], module: str = "", package: bool = False) -> set[str]:
    """The glsgn modules that the statements import, anywhere in them (a function's import runs
    when it is called) but under `if TYPE_CHECKING:`. `module` (glsgn.x.y) resolves relative
    imports; `from glsgn.x import y` imports the module glsgn.x.y too when there is one."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "glsgn")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")  # a package's own name is where its `.` points
                parts = parts[: len(parts) - node.level + int(package)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] == "glsgn":
                found.add(base)
                found.update(
                    f"{base}.{a.name}" for a in node.names if _module_file(f"{base}.{a.name}")
                )
        for child in ast.iter_child_nodes(node):
            visit(child)

    for node in nodes:
        visit(node)
    return found


def _closure(names: set[str], cli: set[str] | None = None) -> set[str]:
    """The files (relative to ROOT) of the glsgn modules `names` and all they import, with
    each module's packages (importing glsgn.data.io runs glsgn/data/__init__.py). `cli`, when
    given, replaces glsgn.cli's imports: its top level and one subcommand's."""
    todo, seen, files = list(names), set(), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        path = _module_file(name)
        assert path is not None, f"{name}: imported, but there is no such module"
        files.add(path.relative_to(ROOT).as_posix())
        if name == "glsgn.cli" and cli is not None:
            todo += cli
        else:
            tree = ast.parse(path.read_text(), str(path))
            todo += _glsgn_imports(tree.body, name, path.name == "__init__.py")
    return files


def _cli_imports(command: str) -> set[str]:
    """What `glsgn COMMAND` imports from cli.py: its top-level imports and cmd_COMMAND's."""
    tree = ast.parse((ROOT / "glsgn/cli.py").read_text())
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    func = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == f"cmd_{command}"]
    assert func, f"glsgn/cli.py has no cmd_{command} for `glsgn {command}`"
    return _glsgn_imports(top + func, "glsgn.cli")


def _notebook_code(path: Path) -> list[ast.stmt]:
    """A notebook's code cells as Python statements (IPython magics and shell lines left out)."""
    nodes = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code":
            lines = cell.source.splitlines()
            code = "\n".join(x for x in lines if not x.lstrip().startswith(("%", "!")))
            nodes += ast.parse(code, str(path)).body
    return nodes


def _stage_files(cmd: str) -> set[str]:
    """The files a stage's command runs: its entry points (a `glsgn` subcommand, a Python
    script, a papermill notebook) and the glsgn modules they import, transitively."""
    words, commands = shlex.split(cmd), [[]]
    for w in words:  # simple commands between &&, ||, ; and |
        if w in ("&&", "||", ";", "|"):
            commands.append([])
        else:
            commands[-1].append(w)
    files: set[str] = set()
    for argv in commands:
        if argv[:1] == ["glsgn"] or argv[:3] in (
            ["python", "-m", "glsgn"],
            ["python3", "-m", "glsgn"],
        ):
            sub = argv[1] if argv[0] == "glsgn" else argv[3]
            files |= _closure({"glsgn.cli"}, cli=_cli_imports(sub))
        elif argv[:1] in (["python"], ["python3"]) and argv[1].endswith(".py"):
            script = ast.parse((ROOT / argv[1]).read_text(), argv[1])
            files |= {argv[1]} | _closure(_glsgn_imports(script.body))
        elif argv[:1] == ["papermill"]:
            notebook = next(w for w in argv if w.endswith(".ipynb"))
            files |= {notebook} | _closure(_glsgn_imports(_notebook_code(ROOT / notebook)))
    return files


def test_closure_follows_relative_imports_packages_and_one_subcommand():
    files = _stage_files("glsgn prepare reflection --quiet")
    assert {
        "glsgn/cli.py",
        "glsgn/data/prepare.py",
        "glsgn/data/synthesis.py",
        "glsgn/data/__init__.py",
        "glsgn/config.py",
    } <= files
    assert "glsgn/train.py" not in files  # cmd_train's import, not cmd_prepare's
    assert "glsgn/viz.py" in _stage_files("papermill -k glsgn notebooks/dataset.ipynb out.ipynb")
    found = _glsgn_imports(
        ast.parse("from . import synthesis\nfrom ..model import pac").body, "glsgn.data.prepare"
    )
    assert found == {"glsgn.data", "glsgn.data.synthesis", "glsgn.model", "glsgn.model.pac"}


def test_every_stage_declares_the_modules_it_runs():
    """dvc.yaml: each stage's deps cover every glsgn module its command runs (a directory
    covers the files under it), so editing a module reruns the stages that use it."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    missing, unrun = {}, []
    for name, stage in stages.items():
        stage = stage.get("do", stage)  # a foreach stage's template
        deps = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]
        files = _stage_files(stage["cmd"])
        if not files:
            unrun.append(name)
        covered = {f for f in files for d in deps if f == d or f.startswith(d.rstrip("/") + "/")}
        if files - covered - EXEMPT:
            missing[name] = sorted(files - covered - EXEMPT)
    assert not unrun, f"stages whose command runs no Python this test can follow: {unrun}"
    assert not missing, "dvc.yaml: stage -> the files it runs but does not list in deps:\n" + (
        "\n".join(f"  {stage} -> {', '.join(fs)}" for stage, fs in missing.items())
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


def test_evidence_pipeline_is_the_root_pipeline_run_from_evidence():
    """evidence/dvc.yaml is generated from dvc.yaml (scripts/evidence_dvc.py): the committed
    file is current, and its params name a valid profile with several seeds."""
    r = subprocess.run(
        [sys.executable, "scripts/evidence_dvc.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    stages = yaml.safe_load((ROOT / "evidence/dvc.yaml").read_text())["stages"]
    assert "--raw ../data/raw" in stages["prepare"]["do"]["cmd"]
    assert "../glsgn/train.py" in stages["train"]["deps"]
    assert "data/prepared" in stages["train"]["deps"]  # evidence's own prepared data
    gpu = yaml.safe_load((ROOT / "evidence/gpu/dvc.yaml").read_text())["stages"]
    assert "../../glsgn/train.py" in gpu["train"]["deps"]
    for folder in ("evidence", "evidence/gpu"):  # issue 16: learning curves on enough images
        params = load_params(ROOT / folder / "params.yaml")
        assert len(params.train.seeds) >= 3 and params.train.curve_every, folder
        assert params.data.splits.test >= 40 and params.data.splits.val >= 16, folder
        variants = {spec.variant for spec in params.train.runs.values()}
        assert {"full", "fullres_flops", "global_only", "local_only"} <= variants, folder
