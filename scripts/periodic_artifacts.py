"""Periodic artifacts in restored test images: `glsgn.metrics.periodic_peak` of each kept
restored image's residual (restored - target) at 2, 4 and 8 px, the periods a stride-2
up-sampling checkerboard leaves at U-Net levels 1-3. About 1 means no pattern.

    python scripts/periodic_artifacts.py haze-full [reflection-full ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from glsgn.config import load_params
from glsgn.data.io import read_image
from glsgn.metrics import periodic_peak
from glsgn.runs import Run

PERIODS = (2, 4, 8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", help="runs (TASK-VARIANT) with images in reports/restored")
    p.add_argument("--root", type=Path, default=Path("."))
    p.add_argument("--seed", type=int, help="the training seed (default: the first)")
    args = p.parse_args()
    params = load_params(args.root / "params.yaml")
    print("| run | image | " + " | ".join(f"{n} px" for n in PERIODS) + " |")
    print("|---|---|" + "---|" * len(PERIODS))
    for run in args.runs:
        r = Run.of(params, run, args.seed)
        images = sorted((args.root / r.paths.restored).glob("*.png"))
        if not images:
            raise SystemExit(f"{run}: no restored images in {r.paths.restored}")
        for path in images:
            target = read_image(args.root / r.split("test") / "target" / path.name)
            residual = read_image(path).rgb - target.rgb
            peaks = " | ".join(f"{periodic_peak(residual, n):.1f}" for n in PERIODS)
            print(f"| {run} | {path.stem} | {peaks} |")


if __name__ == "__main__":
    main()
