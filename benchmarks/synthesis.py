"""Seconds per synthetic pair at 4K (3840x2160) on this machine, for each task.

Two figures per task: the degradation alone (from a clean 4K image), and the whole sample as
the prepare stage makes it (clean source + degradation), from a photograph and from a
dead-leaves scene. Writing the PNGs is not included.

    python benchmarks/synthesis.py [--size 2160 3840] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time
from pathlib import Path

from glsgn.config import load_params
from glsgn.data import synthesis
from glsgn.data.io import read_image
from glsgn.data.prepare import synthesize_sample
from glsgn.data.scenes import dead_leaves

ROOT = Path(__file__).resolve().parents[1]


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, nargs=2, default=[2160, 3840], metavar=("H", "W"))
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    h, w = args.size
    cfg = dataclasses.replace(load_params(ROOT / "params.yaml").data, size=(h, w))
    scale = cfg.scale(h, w)
    photo = ("coffee.png", read_image(ROOT / "assets/starter/coffee.png").rgb)
    scene, other = dead_leaves(h, w, 1, cfg.scenes), dead_leaves(h, w, 2, cfg.scenes)
    second = synthesis.Clean(other.image, other.depth, scale, "scene 2", None)
    clean = synthesis.Clean(scene.image, scene.depth, scale, "scene 1", lambda: second)
    rows = [
        ("dead-leaves scene", "-", _best(lambda: dead_leaves(h, w, 3, cfg.scenes), args.repeats))
    ]
    for task, d in synthesis.DEGRADATIONS.items():
        degrade = functools.partial(d.fn, clean, 0, cfg.degradation(task))
        rows.append((task, "degradation only", _best(degrade, args.repeats)))
        for src, frac in (("photo", 0.0), ("scene", 1.0)):
            c = dataclasses.replace(cfg, scene_fraction=frac, tasks={task: {}})
            sec = _best(lambda t=task, c=c: synthesize_sample(t, c, [photo], 5), args.repeats)
            rows.append((task, f"whole sample from a {src}", sec))
    print(f"\nsynthesis at {w}x{h} (best of {args.repeats}), seconds per pair\n")
    print("| task | what | seconds |\n|---|---|---|")
    for task, what, sec in rows:
        print(f"| {task} | {what} | {sec:.2f} |")


if __name__ == "__main__":
    main()
