"""How far a run's test metrics move on another x86 CPU: retrain and re-evaluate runs of a
profile with torch's and oneDNN's kernels capped to an older instruction set, and compare with
the profile's own metrics. The largest move per metric is what `evaluate.platform_spread`
should hold (an ablation effect must exceed it to hold, glsgn.stats.verdict).

The caps stand in for other CPUs: ATEN_CPU_CAPABILITY picks torch's vectorised kernels and
DNNL_MAX_CPU_ISA oneDNN's (convolutions), as an AVX2-only or an SSE4.1-only CPU would. Each
retrain runs in a folder of its own under --work, reading the profile's prepared data.

    python scripts/platform_spread.py --profile evidence                   # full of each task
    python scripts/platform_spread.py --profile . --runs haze-full --isa avx2 sse41
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from glsgn.config import load_params
from glsgn.runs import Run

ISA = {  # --isa: (ATEN_CPU_CAPABILITY, DNNL_MAX_CPU_ISA)
    "avx2": ("avx2", "AVX2"),
    "sse41": ("default", "SSE41"),
}
METRICS = ("psnr", "ssim", "psnr_y", "ssim_y")  # both conventions of glsgn.evaluate


def retrain(profile: Path, work: Path, run: Run, isa: str) -> dict:
    """Train and evaluate `run` under the `isa` cap in `work`; -> its metrics JSON."""
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "data").exists():
        (work / "data").symlink_to((profile / "data").resolve())
    aten, dnnl = ISA[isa]
    env = {**os.environ, "ATEN_CPU_CAPABILITY": aten, "DNNL_MAX_CPU_ISA": dnnl}
    params = str((profile / "params.yaml").resolve())
    for stage in ("train", "evaluate"):
        cmd = [
            sys.executable,
            "-m",
            "glsgn",
            stage,
            run.name,
            "--seed",
            str(run.seed),
            "--params",
            params,
            "--quiet",
        ]
        print(f"[{isa}] {' '.join(cmd)}", flush=True)
        subprocess.run(cmd, cwd=work, env=env, check=True)
    return json.loads((work / run.paths.metrics).read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--profile", type=Path, default=Path("evidence"), help="a folder: params.yaml")
    p.add_argument("--runs", nargs="+", help="default: TASK-full of each task of data.tasks")
    p.add_argument("--seed", type=int, help="default: the first of train.seeds")
    p.add_argument("--isa", nargs="+", default=["avx2"], choices=list(ISA))
    p.add_argument("--work", type=Path, help="where the retrains go (default: a temporary folder)")
    args = p.parse_args()
    params = load_params(args.profile / "params.yaml")
    names = args.runs or [f"{t}-full" for t in params.data.tasks]
    runs = [Run.of(params, name, args.seed) for name in names]
    for run in runs:
        if not (args.profile / run.paths.metrics).is_file():
            path = args.profile / run.paths.metrics
            print(f"error: {path}: no metrics, run the profile first", file=sys.stderr)
            return 1
    work = args.work or Path(tempfile.mkdtemp(prefix="platform_spread."))
    rows, worst = [], dict.fromkeys(METRICS, 0.0)
    for isa in args.isa:
        for run in runs:
            here = json.loads((args.profile / run.paths.metrics).read_text())
            there = retrain(args.profile, work / isa, run, isa)
            deltas = {m: there[m] - here[m] for m in METRICS}
            worst = {m: max(worst[m], abs(deltas[m])) for m in METRICS}
            cap = there["environment"]["cpu_capability"]
            rows.append((run.name, run.seed, isa, cap, here, there, deltas))
    print(
        "\n| run | seed | cap | kernels | "
        + " | ".join(f"{m} here | there | diff" for m in METRICS)
    )
    print("|---" * (4 + 3 * len(METRICS)) + "|")
    for name, seed, isa, cap, here, there, d in rows:
        cells = [f"{here[m]:.4f} | {there[m]:.4f} | {d[m]:+.4f}" for m in METRICS]
        print(f"| {name} | {seed} | {isa} | {cap} | " + " | ".join(cells) + " |")
    spread = ", ".join(f"{m}: {worst[m]:.4f}" for m in METRICS)
    print(f"\nevaluate.platform_spread: {{{spread}}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
