"""Where a GPU's time goes: the training step (GLSGN and fullres) and a 4K restore, profiled.

For each case: wall time, the time the GPU spent in kernels, the number of kernels and the ten
most expensive ops. Wall time far above kernel time means the host (Python, dispatch, launches)
sets the pace; close to it, the GPU does.

    python benchmarks/profile_gpu.py            # needs CUDA
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import step_setup  # noqa: E402

from glsgn.config import load_params  # noqa: E402
from glsgn.model import build_model  # noqa: E402
from glsgn.restore import restore  # noqa: E402
from glsgn.variants import variant_configs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _report(name: str, prof, wall: float, n: int) -> None:
    events = prof.key_averages()
    kernel_us = sum(e.self_device_time_total for e in events) / n
    kernels = sum(e.count for e in events if e.self_device_time_total > 0) / n
    print(
        f"\n## {name}: wall {wall / n * 1000:.1f} ms, GPU kernels {kernel_us / 1000:.1f} ms, "
        f"{kernels:.0f} ops with GPU time, per call"
    )
    print(events.table(sort_by="self_device_time_total", row_limit=10, max_name_column_width=40))


def profile_step(variant: str, crop: int, batch: int, size: tuple[int, int], n: int) -> None:
    step = step_setup(variant, "cuda", crop, batch, size)[-1]  # train.py's step
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    _report(f"training step {variant}, crop {crop}, batch {batch}, bf16", prof, wall, n)


def profile_restore(size: tuple[int, int], n: int) -> None:
    torch.backends.cudnn.benchmark = True  # as `glsgn restore` sets it
    cfg = variant_configs(load_params(ROOT / "params.yaml"), "full")[0]
    model = build_model(cfg)
    x = torch.rand(3, *size)
    for _ in range(2):
        restore(model, x, device="cuda", precision="bf16", patch_size="auto", progress=False)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(n):
            restore(model, x, device="cuda", precision="bf16", patch_size="auto", progress=False)
        wall = time.perf_counter() - t0
    _report(f"restore {size[1]}x{size[0]}, bf16, patch auto", prof, wall, n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    profile_restore((2160, 3840), 3)
    for variant in ("full", "fullres"):
        profile_step(variant, 512, 4, (2160, 3840), args.steps)


if __name__ == "__main__":
    main()
