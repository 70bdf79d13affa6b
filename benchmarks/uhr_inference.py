"""Wall time and peak memory of UHR inference: GLSGN (patch-streamed) against the
full-resolution single-pathway network of about the same parameter count, patch-streamed the
same way and on the whole image at once.

GLSGN streamed against fullres streamed is what the architecture saves; fullres streamed
against fullres whole is what streaming saves (any fully convolutional network can stream).
Each case runs in a fresh Python process, so its peak is its own: process RSS on the CPU
(`ru_maxrss`, which includes the ~0.6 GB that importing torch costs), and
`torch.cuda.max_memory_allocated` on a GPU. Weights are random: time and memory do not depend
on them.

    python benchmarks/uhr_inference.py                       # 1K, 2K, 4K, 8K on the CPU
    python benchmarks/uhr_inference.py --sizes 4K 8K --device cuda --precision bf16
    python benchmarks/uhr_inference.py --params params.yaml --json reports/efficiency.json

The last form is the pipeline's benchmark stage: sizes, device and precision come from
params.yaml's `benchmark` section, and the JSON feeds the efficiency notebook.

The protocol, written into the JSON beside the results (`protocol`): one untimed warm-up at
256x256 (and, with --repeat > 1, one at the measured size); on CUDA the device is
synchronised before the clock starts and after each run; a run includes the copy of the
input to the device and of the output back; the best of --repeat runs counts; the device's
name, the CPU, threads and precision are recorded. Published UHD timings (UHDformer,
Wave-Mamba, UDR-Mixer) state neither warm-up nor synchronisation, nor, mostly, the GPU:
compare with them knowing that.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import get_args

from glsgn.atomic import atomic_write
from glsgn.config import (
    BENCHMARK_SIZES,
    Precision,
    autocast_dtype,
    benchmark_size,
    load_params,
    parse_memory,
)
from glsgn.variants import variant_configs

ROOT = Path(__file__).resolve().parents[1]


def _child(args: argparse.Namespace) -> None:
    import torch

    from glsgn.model import build_model
    from glsgn.restore import resolve_device, restore
    from glsgn.runs import environment

    torch.manual_seed(0)
    params = load_params(args.params or ROOT / "params.yaml")
    cfg = variant_configs(params, "fullres" if args.model == "fullres" else "full")[0]
    model = build_model(cfg).eval()
    dev = resolve_device(args.device)
    # as `glsgn restore` sets it: cuDNN times its kernels once per shape, unless memory is capped
    torch.backends.cudnn.benchmark = dev.type == "cuda" and args.max_memory is None
    h, w = benchmark_size(args.size)
    amp = autocast_dtype(args.precision)

    patch = (
        None
        if args.patch_size is None
        else (args.patch_size if args.patch_size == "auto" else int(args.patch_size))
    )

    def run(x):
        if args.mode == "stream":
            return restore(
                model,
                x,
                device=dev,
                precision=args.precision,
                patch_size=patch,
                max_memory=args.max_memory,
                progress=False,
            )
        with torch.no_grad(), torch.autocast(dev.type, amp, enabled=amp is not None):
            cl = torch.channels_last  # as restore runs every model
            return (
                model.to(dev, memory_format=cl)(x[None].to(dev, memory_format=cl))
                .b_out[0]
                .float()
                .cpu()
            )

    run(torch.rand(3, 256, 256))  # warm-up: kernels and thread pools start outside the timing
    x = torch.rand(3, h, w)
    base_rss = _rss_mb()
    if args.repeat > 1:  # warm at this very size: cuDNN's choices, cached taps, memory probe
        run(x)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        base_cuda = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        y = run(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    seconds = min(times)
    assert y.shape == x.shape
    result = {
        "model": args.model,
        "mode": args.mode,
        "size": args.size,
        "height": h,
        "width": w,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "precision": args.precision,
        "params": sum(p.numel() for p in model.parameters()),
        "seconds": round(seconds, 4),  # small sizes take milliseconds: 0.01 s would read as 0
        "repeat": args.repeat,
        "patch_size": args.patch_size if args.mode == "stream" else "whole",
        "max_memory": args.max_memory,
        "peak_rss_mb": round(_peak_rss_mb()),
        "rss_before_mb": round(base_rss),
        "environment": environment(dev),
    }
    if dev.type == "cuda":
        result["peak_cuda_mb"] = round((torch.cuda.max_memory_allocated() - base_cuda) / 2**20)
        if args.mode == "stream":
            from glsgn.restore import choose_patch

            m = model.pad_multiple
            hp, wp = -(-h // m) * m, -(-w // m) * m
            result["patch_used"], _ = choose_patch(
                model,
                (hp, wp),
                dev,
                args.precision,
                patch or model.cfg.patch_size,
                parse_memory(args.max_memory),
            )
    print("RESULT " + json.dumps(result), flush=True)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _available_mb() -> float:
    with open("/proc/meminfo") as f:
        info = dict(line.split(":") for line in f)
    return int(info["MemAvailable"].split()[0]) / 1024


def _run_case(model: str, mode: str, size: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--model",
        model,
        "--mode",
        mode,
        "--size",
        size,
        "--device",
        args.device,
        "--precision",
        args.precision,
        "--repeat",
        str(args.repeat),
    ]
    for flag, value in (("--patch-size", args.patch_size), ("--max-memory", args.max_memory)):
        if value is not None:
            cmd += [flag, str(value)]
    if args.params:
        cmd += ["--params", str(args.params.resolve())]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
    return {"model": model, "mode": mode, "size": size, "error": f"exit {r.returncode}: {tail}"}


def protocol(args: argparse.Namespace, results: list[dict]) -> dict:
    """How the results were measured, so a reader can compare them with other timings."""
    envs = [r["environment"] for r in results if "environment" in r]
    return {
        "warm_up": "one untimed run at 256x256, then one at the measured size when repeat > 1",
        "synchronize": "cuda: torch.cuda.synchronize() before timing and after each run",
        "timed": "input to the device, the forward pass(es), output back to the host",
        "statistic": f"best (minimum) of {args.repeat} run(s)",
        "repeat": args.repeat,
        "process": "a fresh Python process per case; random weights",
        "precision": args.precision,
        "device": envs[0]["device"] if envs else args.device,
        "cpu": envs[0]["cpu"] if envs else None,
        "threads": envs[0]["threads"] if envs else None,
        "torch": envs[0]["torch"] if envs else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--sizes",
        nargs="+",
        default=list(BENCHMARK_SIZES),
        help=f"{' '.join(BENCHMARK_SIZES)} or WIDTHxHEIGHT",
    )
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--precision", default="fp32", choices=get_args(Precision))
    p.add_argument(
        "--params",
        type=Path,
        help="the model, sizes, device and precision from this params file "
        "(default: the model of the repository's params.yaml)",
    )
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--patch-size", help="streamed cases: auto or a side (default: the model's)")
    p.add_argument("--max-memory", help="streamed cases on cuda: a device memory cap, e.g. 2GB")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="timed runs per case after a warm-up at the same size; the best counts",
    )
    p.add_argument(
        "--cases",
        nargs="+",
        default=["glsgn:stream", "fullres:stream", "fullres:whole"],
        help="MODEL:MODE pairs (glsgn or fullres; stream or whole)",
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", default="glsgn", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="stream", help=argparse.SUPPRESS)
    p.add_argument("--size", default="4K", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return _child(args)
    if args.params:
        cfg = load_params(args.params).benchmark
        args.sizes, args.device, args.precision = list(cfg.sizes), cfg.device, cfg.precision
    for name in args.sizes:
        benchmark_size(name)  # a bad size fails here, before any case runs

    cases = [tuple(c.split(":")) for c in args.cases]
    results, peaks = [], {}
    for size in args.sizes:
        for model, mode in cases:
            prev = peaks.get((model, mode))
            if model == "fullres" and mode == "whole" and prev is not None:
                # Whole-image memory grows with the pixel count; don't start a case that cannot fit.
                (h, w), (ph, pw) = benchmark_size(size), prev[0]
                est = prev[1] * (h * w) / (ph * pw)
                if est > 0.8 * _available_mb():
                    r = {
                        "model": model,
                        "mode": mode,
                        "size": size,
                        "error": f"skipped: needs about {est / 1024:.0f} GB, "
                        f"{_available_mb() / 1024:.0f} GB available",
                    }
                    print(json.dumps(r), flush=True)
                    results.append(r)
                    continue
            r = _run_case(model, mode, size, args)
            print(json.dumps(r), flush=True)
            results.append(r)
            if "error" not in r:
                peak = r.get("peak_cuda_mb", r["peak_rss_mb"])
                peaks[(model, mode)] = (benchmark_size(size), peak)

    mem = "peak CUDA MB" if any("peak_cuda_mb" in r for r in results) else "peak RSS MB"
    print(f"\n| size | model | mode | patch | seconds | {mem} |\n|---|---|---|---|---|---|")
    for r in results:
        h, w = benchmark_size(r["size"])
        name = r["size"] if r["size"] in BENCHMARK_SIZES else ""
        if "error" in r:
            print(f"| {name} {w}x{h} | {r['model']} | {r['mode']} | | - | {r['error']} |")
        else:
            peak = r.get("peak_cuda_mb", r["peak_rss_mb"])
            patch = r.get("patch_used", r.get("patch_size")) or "model"
            if r.get("max_memory"):
                patch = f"{patch} (cap {r['max_memory']})"
            print(
                f"| {name} {w}x{h} | {r['model']} | {r['mode']} | {patch} | {r['seconds']} "
                f"| {peak} |"
            )
    how = protocol(args, results)
    print(f"\nprotocol: {json.dumps(how)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(args.json) as f:
            f.write((json.dumps({"protocol": how, "results": results}, indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
