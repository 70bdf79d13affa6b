"""Peak training memory by crop, batch and widths, on UHR images, measured on this CPU.

Each case runs in a fresh process: GLSGN (`full`) and its loss built as train.py builds them
from params.yaml (widths and blocks overridden per case), then two training steps (forward,
every loss term, backward, clipping, AdamW) on random tensors: a crop of `--image` at full
resolution and the whole image at 1/global_scale. It reports the process's peak resident memory
and the part the steps added over the model, loss and optimiser built (the activations), in
MiB. On a GPU the same tensors are allocated, so the step's part estimates its fp32 training
memory there (plus the CUDA context, about 0.5 GB; bf16 autocast keeps many activations at
half size) until `--device cuda` measures it (torch.cuda.max_memory_allocated).

    python benchmarks/train_memory.py                          # the 4K table (a few minutes)
    python benchmarks/train_memory.py --image 1024x576 --crops 256 --batches 2 --widths 16,32
    python benchmarks/train_memory.py --device cuda            # on a GPU

Prints a table; asserts nothing. Cases whose estimate (from the batch-1 cases of their widths
measured before them) exceeds `--limit` are not run and say so.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

# widths (and blocks): the UHR CPU profile's, the embedded default's, the paper-scale GPU one's
WIDTHS = {"16,32": 1, "16,32,64": 1, "32,64,128,256": 2}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(crop: int, batch: int, widths: tuple[int, ...], blocks: int, image, device) -> dict:
    """Two training steps of `full` in this process (train_throughput.step_setup, as train.py
    builds them); its peak memory, before and after."""
    import torch
    from train_throughput import step_setup  # this folder's: a script's own

    torch.manual_seed(0)
    w, h = image
    overrides = {"widths": widths, "blocks": blocks}
    step = step_setup("full", device, crop, batch, (h, w), model_overrides=overrides)[-1]
    dev = torch.device(device)
    built = _rss_mib()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        built = torch.cuda.memory_allocated() / 2**20
    for _ in range(2):
        step()
    peak = _rss_mib() if dev.type != "cuda" else torch.cuda.max_memory_allocated() / 2**20
    return {"built_mib": built, "peak_mib": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--image", default="3840x2160", help="WxH of the whole training image")
    p.add_argument("--crops", type=int, nargs="+", default=[256, 512, 960])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--widths", nargs="+", default=list(WIDTHS), help="comma-separated levels")
    p.add_argument("--device", default="cpu")
    p.add_argument("--limit", type=float, default=12.0, help="GiB: skip cases estimated above")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    image = tuple(int(v) for v in args.image.lower().split("x"))
    if args.child:
        crop, batch, widths, blocks = json.loads(args.child)
        print(json.dumps(child(crop, batch, tuple(widths), blocks, image, args.device)))
        return
    print(f"training memory, GLSGN full, {args.image} images, two steps, {args.device}\n")
    print("| widths (blocks) | crop | batch | peak MiB | of which the steps MiB |")
    print("|---|---|---|---|---|")
    for spec in args.widths:
        widths = [int(v) for v in spec.split(",")]
        blocks = WIDTHS.get(spec, 1)
        single: dict[int, float] = {}  # crop -> step MiB at batch 1, for the estimates
        for batch in sorted(args.batches):  # batch 1 first: every crop, for the estimates
            for crop in sorted(args.crops):
                row = f"| {spec} ({blocks}) | {crop} | {batch} |"
                guess = _estimate(single, crop, batch)
                if guess > args.limit * 1024:
                    print(f"{row} not run: about {guess:.0f} estimated |  |", flush=True)
                    continue
                case = json.dumps([crop, batch, widths, blocks])
                r = subprocess.run(
                    [sys.executable, __file__, "--child", case, "--image", args.image]
                    + ["--device", args.device],
                    capture_output=True,
                    text=True,
                )
                if r.returncode:
                    tail = (r.stderr.strip().splitlines() or ["no output"])[-1][:80]
                    print(f"{row} failed: {tail} |  |", flush=True)
                    continue
                m = json.loads(r.stdout.strip().splitlines()[-1])
                step = m["peak_mib"] - m["built_mib"]
                if batch == 1:
                    single[crop] = step
                print(f"{row} {m['peak_mib']:.0f} | {step:.0f} |", flush=True)


def _estimate(single: dict[int, float], crop: int, batch: int) -> float:
    """Step MiB of a case from the batch-1 cases measured: per sample a part fixed by the
    whole image's global view and a part growing with the crop's area, fitted to the two
    largest crops; 0 (run it) before two are known."""
    if len(single) < 2:
        return 0.0
    (c0, c1) = sorted(single)[-2:]
    s0, s1 = single[c0], single[c1]
    slope = (s1 - s0) / (c1**2 - c0**2)
    return max(0.0, s0 + slope * (crop**2 - c0**2)) * batch


if __name__ == "__main__":
    main()
