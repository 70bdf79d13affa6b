"""What the pipeline wrote, as plain Python: the notebooks' one way in.

The repository's root, a task's runs of train.runs in figure order, and loaders for the
stages' outputs: the evaluate stage's metrics, the train stage's dvclive curves, the benchmark
stage's results and prepared pairs. A loader raises FileNotFoundError, naming the path, when
the pipeline has not written what it reads. Drawing is glsgn.viz's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .config import VARIANTS, Params

__all__ = [
    "project_root",
    "task_runs",
    "load_metrics",
    "load_curves",
    "load_benchmark",
    "load_pairs",
]


def _variant_rank(variant: str) -> int:
    """Figure order: config.VARIANTS' (`full`, the ablations, the baselines), unknown last."""
    order = list(VARIANTS)
    return order.index(variant) if variant in order else len(order)


def project_root(start: str | Path = ".") -> Path:
    """The repository's root: the first of `start` and its parents with dvc.yaml and
    params.yaml. Notebooks chdir there, because JupyterLab starts kernels in notebooks/ while
    the pipeline's papermill runs from the root, and their paths are the root's."""
    start = Path(start).resolve()
    for d in (start, *start.parents):
        if (d / "dvc.yaml").is_file() and (d / "params.yaml").is_file():
            return d
    raise FileNotFoundError(f"{start}: neither it nor a parent holds dvc.yaml and params.yaml")


def task_runs(params: Params, task: str) -> dict[str, str]:
    """{variant: run} of a task's entries in train.runs, `full` first, then ablations, baselines."""
    runs = {s.variant: r for r, s in params.train.runs.items() if s.task == task}
    return {v: runs[v] for v in sorted(runs, key=_variant_rank)}


def load_metrics(
    metrics_dir: str | Path, task: str, variants: Sequence[str] | None = None
) -> list[dict]:
    """The evaluate stage's metrics/{task}/*.json, `full` first, then ablations, baselines.
    With `variants` (the task's runs in train.runs), exactly those: a file left from a run
    no longer in params.yaml is ignored, and a missing one is an error."""
    root = Path(metrics_dir, task)
    rows = {p.stem: json.loads(p.read_text()) for p in sorted(root.glob("*.json"))}
    if variants is not None:
        missing = [v for v in variants if v not in rows]
        if missing:
            raise FileNotFoundError(f"{root}: no metrics for {', '.join(missing)} (run dvc repro)")
        rows = {v: rows[v] for v in variants}
    if not rows:
        raise FileNotFoundError(f"{root}: no metrics (run dvc repro first)")
    return sorted(rows.values(), key=lambda r: _variant_rank(r["variant"]))


def load_curves(dvclive_dir: str | Path, run: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A training run's dvclive curves, {"train/total": (steps, values), "val/psnr": ...}."""
    root = Path(dvclive_dir, run, "plots", "metrics")
    curves = {}
    for path in sorted(root.rglob("*.tsv")):
        table = np.loadtxt(path, delimiter="\t", skiprows=1, ndmin=2)
        curves[path.relative_to(root).with_suffix("").as_posix()] = (table[:, 0], table[:, 1])
    if not curves:
        raise FileNotFoundError(f"{root}: no dvclive curves (run dvc repro first)")
    return curves


def load_benchmark(path: str | Path) -> list[dict]:
    """The benchmark stage's results: one dict per (model, mode, size); failed or skipped
    cases carry "error" instead of timings."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no benchmark results (run dvc repro first)")
    rows = json.loads(path.read_text())
    if not isinstance(rows, list) or not all("model" in r and "size" in r for r in rows):
        raise ValueError(f"{path}: expected a list of benchmark results with model and size")
    return rows


def load_pairs(prepared_dir: str | Path, task: str, split: str = "train", n: int = 2) -> list[dict]:
    """`n` pairs of a prepared split for the dataset figure, photographs and dead-leaves scenes
    in turn: dicts of name, input and target ((H, W, 3) arrays, as viz.to_image) and source
    ("photo", "scene" or "paired"), the latter from the split's manifest.json."""
    from .data.datasets import PairedImages
    from .viz import to_image

    root = Path(prepared_dir, task)
    manifest = root / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no prepared data (run dvc repro first)")
    sources = {Path(s["name"]).stem: str(s.get("source", "paired"))
               for s in json.loads(manifest.read_text())["samples"]}  # fmt: skip
    kinds = {"photo": "photo", "dead_leaves": "scene"}
    pairs = PairedImages(root / split)
    kind = [kinds.get(sources.get(p.name, "").split(":")[0], "paired") for p in pairs.pairs]
    rank = {k: 0 for k in kind}
    order = []  # photo, scene, photo, scene, ...: both kinds of clean image in a few pairs
    for i, k in enumerate(kind):
        order.append((rank[k], k != "photo", i))
        rank[k] += 1
    out = []
    for _, _, i in sorted(order)[:n]:
        item = pairs[i]
        out.append({"name": item["name"], "input": to_image(item["input"]),
                    "target": to_image(item["target"]), "source": kind[i]})  # fmt: skip
    return out
