"""Notebooks: committed without outputs, each with a `parameters` cell and a papermill DVC stage.
Every notebook runs top to bottom with tiny parameters in tests/test_pipeline.py (a fresh clone's
`dvc repro`), which checks the figures; the ablation notebook also runs here on metrics files the
test writes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import numpy as np
import papermill
import pytest
import yaml
from PIL import Image

from glsgn.config import load_params
from glsgn.results import ablation, write_ablation

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.fixture(scope="module")
def make_calls(tmp_path_factory) -> list[list[str]]:
    """The commands `make figures docs-figures docs-evidence-figures docs-uhr-figures` runs,
    with the venv's
    python and dvc replaced by recorders (and neither setup nor repro run): what the Makefile
    does, not what its text looks like."""
    if shutil.which("make") is None:
        pytest.skip("no make")
    tmp = tmp_path_factory.mktemp("make")
    venv, log = tmp / "venv", tmp / "calls.log"
    (venv / "bin").mkdir(parents=True)
    for name in ("python", "dvc"):
        (venv / "bin" / name).write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n')
        (venv / "bin" / name).chmod(0o755)
    (venv / ".setup-stamp").touch()
    targets = ["figures", "docs-figures", "docs-evidence-figures", "docs-uhr-figures"]
    cmd = ["make", "-s", "-C", str(ROOT), *targets, f"VENV={venv}"]
    cmd += ["-o", str(venv / ".setup-stamp"), "-o", "repro"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return [line.split() for line in log.read_text().splitlines()]


def _notebook_stage(dvc_yaml: Path, name: str) -> tuple[dict, set[str]]:
    """The stage of `dvc_yaml` that runs notebook NAME (`${key}` filled in), and the names
    `dvc repro` takes for it: notebook-NAME, or notebook@NAME and notebook in a foreach."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    if f"notebook-{name}" in stages:
        return stages[f"notebook-{name}"], {f"notebook-{name}"}
    assert name in stages["notebook"]["foreach"], (dvc_yaml, name)
    stage = json.loads(json.dumps(stages["notebook"]["do"]).replace("${key}", name))
    return stage, {f"notebook@{name}", "notebook"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_parametrised(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), path
    assert any("parameters" in c.metadata.get("tags", []) for c in code), path
    assert nb.metadata["kernelspec"]["name"] == "glsgn"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_is_a_papermill_stage(path, make_calls):
    stage, names = _notebook_stage(ROOT / "dvc.yaml", path.stem)
    # `make figures` re-runs the notebook stages: this one among them
    (dvc,) = [c for c in make_calls if c[0] == "dvc"]
    assert dvc[:2] == ["dvc", "repro"] and names & set(dvc[2:]), dvc
    assert f"papermill -k glsgn --log-level WARNING notebooks/{path.stem}.ipynb" in stage["cmd"]
    assert f"reports/notebooks/{path.stem}.ipynb" in stage["cmd"]
    assert {f"notebooks/{path.stem}.ipynb", "glsgn/viz.py"} <= set(stage["deps"])
    assert f"reports/figures/{path.stem}" in stage["outs"]
    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert f'figures_dir = "reports/figures/{path.stem}"' in params.source
    # its default paths are the repository root's, wherever the kernel starts (JupyterLab:
    # notebooks/); tests/test_pipeline.py runs one notebook from there
    assert "os.chdir(project_root())" in code[1], path


def _write_metrics(root, run: str, seed: int, per_image: dict[str, float], variant: str) -> None:
    """metrics/RUN/seedS.json, .record.json and .csv as the evaluate stage writes them."""
    d = root / "metrics" / run
    d.mkdir(parents=True, exist_ok=True)
    psnr = float(np.mean(list(per_image.values())))
    scores = {"psnr": psnr, "ssim": 0.8, "psnr_y": psnr + 1, "ssim_y": 0.85, "lpips": None}
    (d / f"seed{seed}.json").write_text(json.dumps(scores))
    record = {"run": run, "seed": seed, "variant": variant, "semantic_backbone": "random"}
    record["lpips_note"] = "no AlexNet weights"
    (d / f"seed{seed}.record.json").write_text(json.dumps(record))
    rows = ["name,seed,psnr,ssim,psnr_y,ssim_y,lpips,seconds,peak_memory_mb"]
    rows += [
        f"{k},{seed},{v},{0.8 + v / 1000},{v + 1},{0.85 + v / 1000},,0.1,700"
        for k, v in per_image.items()
    ]
    (d / f"seed{seed}.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("convention", ["rgb", "y"])
def test_ablation_notebook_tells_what_holds_and_writes_its_figures(tmp_path, convention):
    """Three seeds, 30 images: fullres 2 dB worse than full holds; no_content, no different
    from full, is not shown; a run params.yaml no longer makes is ignored. evaluate.metric
    picks the convention contrasted (y: the psnr_y and ssim_y columns). The ablate stage's
    table (glsgn.results.ablation) in, the notebook's printout and figures out."""
    rng = np.random.default_rng(0)
    base = {f"{i:04d}": 25 + rng.normal(0, 1) for i in range(30)}
    for seed in (0, 1, 2):
        for run, variant, shift in (
            ("rain-full", "full", 0.0),
            ("rain-no_content", "no_content", 0.0),
            ("rain-fullres", "fullres", -2.0),
            ("rain-no_pyramid", "no_pyramid", -9.0),
        ):
            per_image = {k: v + shift + rng.normal(0, 0.1) for k, v in base.items()}
            _write_metrics(tmp_path, run, seed, per_image, variant)
    train = {"variants": ["fullres"], "variant_tasks": ["rain"], "term_tasks": ["rain"]}
    params = {
        "data": {"tasks": {"rain": {}}},
        "train": {**train, "seeds": [0, 1, 2]},
        "loss": {"consistency": {"content": 0.1}},  # runs: rain-full, -fullres, -no_content
        "evaluate": {"metric": convention},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    table = ablation(load_params(tmp_path / "params.yaml"), tmp_path / "metrics", n_resamples=500)
    write_ablation(table, tmp_path / "table.json")
    figures = tmp_path / "figures"
    papermill.execute_notebook(
        str(ROOT / "notebooks/ablation.ipynb"),
        str(tmp_path / "out.ipynb"),
        kernel_name="glsgn",
        parameters={
            "params_file": str(tmp_path / "params.yaml"),
            "metrics_dir": str(tmp_path / "metrics"),
            "figures_dir": str(figures),
            "table_file": str(tmp_path / "table.json"),
        },
        cwd=str(ROOT),
        progress_bar=False,
    )
    psnr, ssim = {"rgb": ("psnr", "ssim"), "y": ("psnr_y", "ssim_y")}[convention]
    for name in ("psnr", "ssim", "lpips", f"{psnr}_forest", f"{ssim}_forest"):
        png = figures / f"rain_{name}.png"
        w, h = Image.open(png).size
        assert 400 < w < 3000 and 200 < h < 1500, (png, w, h)
        assert (figures / f"rain_{name}.pdf").read_bytes().startswith(b"%PDF")
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    printed = "".join(
        o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs
    )
    lines = {
        line.split()[1] + " " + line.split()[2]: line
        for line in printed.splitlines()
        if line.startswith("rain ") and len(line.split()) > 3
    }
    assert lines[f"fullres {psnr}"].endswith("holds"), lines[f"fullres {psnr}"]
    assert lines[f"no_content {psnr}"].endswith("not shown"), lines[f"no_content {psnr}"]
    verdicts = {k.split()[1] for k, v in lines.items() if v.endswith(("holds", "not shown"))}
    assert verdicts == {psnr, ssim}
    assert "no_pyramid" not in printed
    table = json.loads((tmp_path / "table.json").read_text())
    assert {(r["variant"], r["metric"], r["verdict"]) for r in table} >= {
        ("fullres", psnr, "holds"),
        ("no_content", psnr, "not shown"),
    }


def test_readme_figures_are_the_docs_copies_of_pipeline_figures(make_calls):
    """Every image the README and docs/ show exists, and is a copy that `make docs-figures`
    (or `make docs-evidence-figures`, `make docs-uhr-figures`) makes, with
    scripts/docs_copy.py, of a notebook stage's figure; the UHR profile's are wider, to keep
    their 1:1 crops."""
    shown = []
    for page in (ROOT / "README.md", *(ROOT / "docs").glob("*.md")):
        for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
            shown.append((page.parent / link).resolve().relative_to(ROOT).as_posix())
    assert shown, "the README shows no figures"
    copies = {c[3]: c[2] for c in make_calls if c[:2] == ["python", "scripts/docs_copy.py"]}
    assert set(shown) == set(copies)
    for src in copies.values():
        pipeline, figure = src.split("reports/figures/")  # "", "evidence/" or "uhr/"; NB/NAME.png
        name = figure.split("/")[0]
        stage, _ = _notebook_stage(ROOT / pipeline / "dvc.yaml", name)
        assert f"reports/figures/{name}" in stage["outs"], src
    for path in shown:
        with Image.open(ROOT / path) as im:
            widest = 2400 if "/uhr-" in path else 1400
            assert im.format == "JPEG" and 600 <= im.width <= widest, (path, im.size)
