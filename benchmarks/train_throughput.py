"""Training throughput on UHR pairs, per data-loader worker (one process), on this machine.

Writes synthetic pairs (dead-leaves scenes, the input a hazy, noisy copy) as PNG into a temporary
folder (not timed), then measures `TrainCrops` items per second with keys as the training
sampler gives them, without the cache (decode two PNGs per sample) and with it (decode once,
then read each crop from memory maps), plus the cache's build time and size on disk.

    python benchmarks/train_throughput.py --pairs 4 --size 3840x2160 --crop 512

Prints a table; asserts nothing. Each measurement is a section (see `SECTIONS`), so that model
steps (forward/backward on a batch) can be timed the same way later.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glsgn.data.arrays import cache_size
from glsgn.data.datasets import TrainCrops
from glsgn.data.io import write_image
from glsgn.data.scenes import dead_leaves
from glsgn.train import StepBatches


@dataclass
class Setup:
    """What every section measures on: the synthetic split and the training settings."""

    root: Path  # the split: input/ and target/
    cache: Path  # an empty folder for the decoded-array cache
    crop: int | None
    multiple: int
    global_scale: int
    batch: int
    samples: int  # items per timed run (the uncached run takes fewer: it is slow)
    uncached_samples: int


Row = tuple[str, str, str]  # (what, value, unit)


def write_pairs(folder: Path, n: int, h: int, w: int) -> Path:
    """n synthetic (input, target) PNG pairs of h x w pixels; returns the split folder."""
    rng = np.random.default_rng(0)
    for side in ("input", "target"):
        (folder / side).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        clean = dead_leaves(h, w, seed=i).image
        hazy = 0.7 * clean + 0.2 + rng.normal(0, 0.02, clean.shape).astype(np.float32)
        write_image(folder / "target" / f"p{i}.png", clean)
        write_image(folder / "input" / f"p{i}.png", np.clip(hazy, 0, 1))
    return folder


def samples_per_second(ds: TrainCrops, setup: Setup, samples: int) -> float:
    """Items per second in one process, keys (index, epoch, batch) from the training sampler."""
    steps = -(-samples // setup.batch)
    keys = [k for b in StepBatches(len(ds), setup.batch, 0, 0, steps) for k in b][:samples]
    ds[keys[0]]  # warm-up: imports, page cache
    t0 = time.perf_counter()
    for key in keys:
        ds[key]
    return len(keys) / (time.perf_counter() - t0)


def data_section(s: Setup) -> list[Row]:
    """TrainCrops items/s without and with the cache; the cache's cold and warm open."""
    args = (s.root, s.crop, s.multiple, s.global_scale)
    plain = TrainCrops(*args)
    rate = samples_per_second(plain, s, s.uncached_samples)
    rows = [("items/s per worker, no cache", f"{rate:.2f}", "1/s")]
    t0 = time.perf_counter()
    TrainCrops(*args, cache=s.cache, progress=False)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    cached = TrainCrops(*args, cache=s.cache, progress=False)
    reopen = time.perf_counter() - t0
    return rows + [
        ("items/s per worker, cached", f"{samples_per_second(cached, s, s.samples):.1f}", "1/s"),
        ("cache build (decode all pairs)", f"{build:.2f}", "s"),
        ("cache reopen (nothing to decode)", f"{reopen:.3f}", "s"),
        ("cache size on disk", f"{cache_size(s.cache) / 2**20:.0f}", "MiB"),
    ]


# Each section takes the Setup and returns rows for the table. Model-step timings go here.
SECTIONS: list[tuple[str, Callable[[Setup], list[Row]]]] = [
    ("data loading", data_section),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--size", default="3840x2160", help="WxH")
    p.add_argument("--crop", type=int, default=512, help="0: the whole image")
    p.add_argument("--multiple", type=int, default=16, help="the model's pad_multiple")
    p.add_argument("--global-scale", type=int, default=4)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--uncached-samples", type=int, default=4)
    args = p.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="train_throughput.") as tmp:
        t0 = time.perf_counter()
        root = write_pairs(Path(tmp) / "train", args.pairs, h, w)
        print(f"wrote {args.pairs} pairs of {w}x{h} in {time.perf_counter() - t0:.1f} s (untimed)")
        setup = Setup(
            root, Path(tmp) / "cache", args.crop or None, args.multiple, args.global_scale,
            args.batch, args.samples, args.uncached_samples,
        )  # fmt: skip
        print(f"\n{args.pairs} pairs {w}x{h}, crop {args.crop or 'whole image'}, multiple "
              f"{args.multiple}, global scale {args.global_scale}, one process\n")  # fmt: skip
        print("| section | what | value | unit |\n|---|---|---|---|")
        for name, section in SECTIONS:
            for what, value, unit in section(setup):
                print(f"| {name} | {what} | {value} | {unit} |", flush=True)


if __name__ == "__main__":
    main()
