"""What the pipeline wrote, as plain Python: the notebooks' one way in.

The repository's root, a task's runs in figure order, and loaders for the
stages' outputs: the evaluate stages' metrics (means and every image's, per seed), the train
stages' dvclive curves, the benchmark stage's results and prepared pairs. A loader raises
FileNotFoundError, naming the path, when the pipeline has not written what it reads.
Drawing is glsgn.viz's.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import stats
from .atomic import atomic_write
from .config import Params
from .runs import RunPaths
from .stats import CONVENTIONS, PLATEAU_DB, plateau
from .variants import runs, variants

__all__ = [
    "project_root",
    "task_runs",
    "load_metrics",
    "load_per_image",
    "load_curves",
    "learning_curves",
    "load_benchmark",
    "ablation",
    "write_ablation",
    "load_ablation",
    "load_pairs",
]


def _variant_rank(variant: str) -> int:
    """Figure order: the ablation table's (`full`, the ablations, the baselines), unknown last."""
    order = list(variants())
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
    """{variant: run} of a task's runs, `full` first, then the ablations and the baselines."""
    made = {s.variant: r for r, s in runs(params).items() if s.task == task}
    return {v: made[v] for v in sorted(made, key=_variant_rank)}


def load_metrics(metrics_dir: str | Path, runs: dict[str, str], seeds: Sequence[int]) -> list[dict]:
    """Each variant's test-set means ({variant: run}, as `task_runs` gives them), from the
    evaluate stages' metrics/RUN/seedS.json, averaged over `seeds`; `full` first, then the
    ablations and baselines. A row is the first seed's scores and record (.record.json) with
    psnr, ssim, psnr_y, ssim_y and lpips replaced by their mean over seeds (None where a seed
    has none), plus `seeds` and `psnr_by_seed`. A missing file is an error naming it."""
    rows = []
    for run in runs.values():
        per_seed = []
        for seed in seeds:
            paths = RunPaths(run, seed, metrics_dir=metrics_dir)
            for path in (paths.metrics, paths.record):
                if not path.is_file():
                    raise FileNotFoundError(
                        f"{path}: no metrics for {run} seed {seed} (run dvc repro)"
                    )
            per_seed.append(
                json.loads(paths.metrics.read_text()) | json.loads(paths.record.read_text())
            )
        row = dict(per_seed[0])
        for key in ("psnr", "ssim", "psnr_y", "ssim_y", "lpips"):
            values = [m.get(key) for m in per_seed]
            row[key] = None if None in values else float(np.mean(values))
        row.update(seeds=list(seeds), psnr_by_seed=[m["psnr"] for m in per_seed])
        rows.append(row)
    if not rows:
        raise FileNotFoundError(f"{metrics_dir}: no runs to load")
    return sorted(rows, key=lambda r: _variant_rank(r["variant"]))


def load_per_image(
    metrics_dir: str | Path, task: str, runs: dict[str, str], seeds: Sequence[int]
) -> list[dict]:
    """Every test image's metrics of each variant and seed (metrics/RUN/seedS.csv), as rows of
    task, variant, seed, image, psnr, ssim, psnr_y and ssim_y (the latter two only where the
    CSV has them): what glsgn.stats pairs with `full`."""
    rows = []
    for variant, run in runs.items():
        for seed in seeds:
            path = RunPaths(run, seed, metrics_dir=metrics_dir).per_image
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no per-image metrics (run dvc repro)")
            with open(path, newline="") as f:
                for r in csv.DictReader(f):
                    rows.append(
                        {
                            "task": task,
                            "variant": variant,
                            "seed": seed,
                            "image": r["name"],
                            **{k: float(r[k]) for c in CONVENTIONS.values() for k in c if k in r},
                        }
                    )
    return rows


def ablation(
    params: Params, metrics_dir: str | Path = "metrics", n_resamples: int = stats.N_RESAMPLES
) -> list[stats.Result]:
    """The ablation table: every variant of every task that trains `full` and something else,
    against `full` (glsgn.stats: paired, bootstrapped over seeds and images, Holm per task), on
    evaluate.metric's convention, each effect measured against evaluate.platform_spread too."""
    rows = []
    for task in params.data.tasks:
        made = task_runs(params, task)
        if "full" in made and len(made) > 1:
            rows += load_per_image(metrics_dir, task, made, params.train.seeds)
    if not rows:
        return []
    return stats.ablation_table(
        rows,
        metrics=CONVENTIONS[params.evaluate.metric],
        n_resamples=n_resamples,
        platform=params.evaluate.platform_spread,
    )


def write_ablation(table: Sequence[stats.Result], path: str | Path) -> None:
    """The table as JSON (a DVC metric: `dvc metrics show`), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        f.write((json.dumps(stats.records(table), indent=1) + "\n").encode())


def load_ablation(path: str | Path = "reports/ablation.json") -> list[stats.Result]:
    """The ablation stage's table (`glsgn ablate`), as glsgn.stats results."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no ablation table (run dvc repro)")
    nan = float("nan")  # JSON's null for a spread that one seed cannot give
    return [
        stats.Result(**{k: nan if v is None else v for k, v in r.items()})
        for r in json.loads(path.read_text())
    ]


def load_curves(
    dvclive_dir: str | Path, run: str, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A training run's dvclive curves at one seed, {"train/total": (steps, values), ...}."""
    root = RunPaths(run, seed, dvclive_dir=dvclive_dir).live / "plots" / "metrics"
    curves = {}
    for path in sorted(root.rglob("*.tsv")):
        table = np.loadtxt(path, delimiter="\t", skiprows=1, ndmin=2)
        curves[path.relative_to(root).with_suffix("").as_posix()] = (table[:, 0], table[:, 1])
    if not curves:
        raise FileNotFoundError(f"{root}: no dvclive curves (run dvc repro first)")
    return curves


def learning_curves(params: Params, dvclive_dir: str | Path, task: str) -> list[dict]:
    """One row per (variant, seed) of a task's runs that logged a learning curve
    (train.curve_every): its test PSNR and SSIM against training samples seen, where it ended,
    and whether validation PSNR had reached its plateau (`stats.plateau`)."""
    rows = []
    for variant, name in task_runs(params, task).items():
        for seed in params.train.seeds:
            c = load_curves(dvclive_dir, name, seed)
            if "test/psnr" not in c:
                continue
            samples, psnr = c["test/samples"][1], c["test/psnr"][1]
            try:
                gain, since = plateau(*c["val/psnr"])
            except (KeyError, ValueError):  # validation off, or once: no curve to read
                gain, since = float("nan"), float("nan")
            best = int(np.argmax(psnr))
            rows.append(
                {
                    "variant": variant,
                    "run": name,
                    "seed": seed,
                    "samples": samples,
                    "psnr": psnr,
                    "ssim": c["test/ssim"][1],
                    "final_psnr": float(psnr[-1]),
                    "final_ssim": float(c["test/ssim"][1][-1]),
                    "best_psnr": float(psnr[best]),
                    "best_samples": int(samples[best]),
                    "val_gain": gain,
                    "val_gain_since": since,
                    "plateau": bool(gain < PLATEAU_DB) if np.isfinite(gain) else None,
                }
            )
    return rows


def load_benchmark(path: str | Path) -> tuple[dict, list[dict]]:
    """The benchmark stage's protocol (warm-up, synchronisation, statistic, device, precision)
    and its results: one dict per (model, mode, size); failed or skipped cases carry "error"
    instead of timings."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no benchmark results (run dvc repro first)")
    data = json.loads(path.read_text())
    rows = data.get("results") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all("model" in r and "size" in r for r in rows):
        raise ValueError(
            f"{path}: expected a mapping with protocol and results (model, size per case)"
        )
    return data.get("protocol", {}), rows


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
    sources = {
        Path(s["name"]).stem: str(s.get("source", "paired"))
        for s in json.loads(manifest.read_text())["samples"]
    }
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
        out.append(
            {
                "name": item["name"],
                "input": to_image(item["input"]),
                "target": to_image(item["target"]),
                "source": kind[i],
            }
        )
    return out
