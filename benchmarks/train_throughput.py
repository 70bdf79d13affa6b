"""Training throughput on UHR pairs, per data-loader worker (one process), on this machine.

Writes synthetic pairs (dead-leaves scenes, the input a hazy, noisy copy) as PNG into a temporary
folder (not timed), then measures `TrainCrops` items per second with keys as the training
sampler gives them, without the cache (decode two PNGs per sample) and with it (decode once,
then read each crop from memory maps), plus the cache's build time and size on disk.

    python benchmarks/train_throughput.py --pairs 4 --size 3840x2160 --crop 512

    python benchmarks/train_throughput.py --sections step --device cuda   # on a GPU
    python benchmarks/train_throughput.py --sections settings             # CPU: fp32 vs bf16
    python benchmarks/train_throughput.py --sections terms --params uhr/params.yaml \
        --size 1024x576 --step-crop 256 --step-batch 2 --steps 6     # where a UHR step goes

Prints a table; asserts nothing. Sections (`SECTIONS`): `data`, the loader; `step`, one
training step (forward, losses, backward, clipping, AdamW) of GLSGN and of fullres at the same
crop and batch (params.yaml's model): FLOPs per sample and the host-device copies and syncs per
step, counted on the meta device (so on any machine), and samples/s on --device; `settings`,
end-to-end `glsgn train` samples/s on this CPU for fp32, channels_last, bf16 autocast and both
(bf16 only where the CPU runs it natively), on params.yaml's data and model; `terms`, where one
training step's time goes: the model's forward and backward alone, then the whole step with
each loss term switched off in turn (the time it saves is what it costs). `--params` picks the
params file the step sections read (a profile's, e.g. uhr/params.yaml).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from glsgn.config import load_params
from glsgn.data.arrays import cache_size
from glsgn.data.datasets import TrainCrops
from glsgn.data.io import write_image
from glsgn.data.prepare import prepare
from glsgn.data.scenes import dead_leaves
from glsgn.losses import GLSGNLoss, TrainBatch
from glsgn.model import build_model
from glsgn.model.resample import Region, round_up
from glsgn.runs import native_bf16
from glsgn.train import StepBatches, autocast_for, lr_schedule, train, train_step
from glsgn.variants import variant_configs

ROOT = Path(__file__).resolve().parents[1]


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
    image_size: tuple[int, int]  # H, W of the pairs: the global view the step sees
    step_crop: int  # crop and batch of the timed model step (train.crop, train.batch_size)
    step_batch: int
    steps: int
    device: str
    precision: str  # the model step's train.precision (as train.py applies it on the device)
    cpu_steps: bool  # time the model step on the CPU too (slow)
    train_steps: int  # settings: steps of each end-to-end run
    params: Path = ROOT / "params.yaml"  # what the step sections build the model and loss from


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


# --- the model step: FLOPs and host-device traffic (any machine), samples/s (on the device) ---


class StepCounter(TorchDispatchMode):
    """Counts, for every op a training step dispatches: FLOPs (torch.utils.flop_counter's
    formulas), copies between devices, and reads of a device value by the host (syncs)."""

    def __init__(self) -> None:
        super().__init__()
        self.flops, self.copies, self.syncs = 0, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        out = func(*args, **kwargs)
        if packet in flop_registry:
            self.flops += flop_registry[packet](*args, **kwargs, out_val=out)
        name = packet.__name__
        if name in ("_to_copy", "copy_"):
            src = args[1] if name == "copy_" else args[0]
            self.copies += src.device != out.device
        self.syncs += name == "_local_scalar_dense"
        return out


def step_setup(
    variant: str,
    device: str,
    crop: int,
    batch: int,
    size: tuple[int, int],
    precision="fp32",
    params_file: Path = ROOT / "params.yaml",
    without: str | None = None,
    model_overrides: dict | None = None,
) -> tuple[torch.nn.Module, GLSGNLoss, torch.optim.Optimizer, TrainBatch, Callable[[], None]]:
    """Model, loss, optimiser, scheduler, scaler and one batch on `device`, as train.py builds
    them (loss term `without` weighted 0, model keys `model_overrides` replaced; the image
    padded to the model's grid, as TrainCrops pads it); -> (model, loss_fn, opt, batch, step),
    `step()` being train.py's `train_step`."""
    params = load_params(params_file)
    mcfg, lcfg = variant_configs(params, variant)
    mcfg = dataclasses.replace(mcfg, **(model_overrides or {}))
    if without in lcfg.consistency:
        lcfg = dataclasses.replace(lcfg, consistency={**lcfg.consistency, without: 0.0})
    elif without is not None:
        lcfg = dataclasses.replace(lcfg, **{without: 0.0})
    with torch.device(device):
        model = build_model(mcfg)
        loss_fn = GLSGNLoss(lcfg)
    tcfg = params.train
    if tcfg.channels_last:  # as train.py runs it
        model = model.to(memory_format=torch.channels_last)
    torch.backends.cudnn.benchmark = True
    m = model.pad_multiple
    h, w = (round_up(v, m) for v in size)
    gs = mcfg.global_scale
    x = torch.rand(batch, 3, crop, crop, device=device)
    xg = torch.rand(batch, 3, h // gs, w // gs, device=device)
    y0, x0 = (h - crop) // 2 // m * m, (w - crop) // 2 // m * m
    region = Region((h, w), (y0, y0 + crop, x0, x0 + crop))
    b = TrainBatch(x, x.clone(), xg, xg.clone(), region=region)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(tcfg))
    amp = autocast_for(precision, torch.device(device)) if device != "meta" else None
    scaler = torch.amp.GradScaler(enabled=False)

    def step() -> None:
        train_step(model, b, loss_fn, opt, sched, scaler, tcfg.clip, amp)

    return model, loss_fn, opt, b, step


def step_counts(
    variant: str, crop: int, batch: int, size: tuple[int, int], params_file: Path
) -> dict:
    """FLOPs per sample and device traffic of one training step, counted on the meta device
    (shapes only): a copy from the host there is an upload on a GPU, a read a sync.
    The optimiser is left out: on the meta device it takes a per-tensor path that reads each
    step counter, where CUDA's fused path reads none."""
    model, loss_fn, _, b, _ = step_setup(variant, "meta", crop, batch, size, "fp32", params_file)
    model(b.x, global_view=b.x_global, region=b.region)  # first call builds cached index taps
    counter = StepCounter()
    with counter:
        terms = loss_fn(model(b.x, global_view=b.x_global, region=b.region), b)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    return {
        "gflop_per_sample": counter.flops / batch / 1e9,
        "uploads": counter.copies,
        "syncs": counter.syncs,
    }


def _timed(fn: Callable[[], object], steps: int, device: str) -> float:
    """Seconds per call of `fn`, after three untimed calls (kernels chosen, taps cached)."""
    for _ in range(3):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / steps


def step_speed(
    variant: str,
    crop: int,
    batch: int,
    size: tuple[int, int],
    device: str,
    steps: int,
    precision: str,
    params_file: Path,
) -> float:
    """Samples/s of the model step alone, the batch already on the device."""
    step = step_setup(variant, device, crop, batch, size, precision, params_file)[-1]
    return batch / _timed(step, steps, device)


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def step_section(s: Setup) -> list[Row]:
    """The training step of GLSGN against fullres at the same crop and batch: FLOPs and
    host-device traffic counted on the meta device; samples/s timed on `s.device`."""
    size = s.image_size
    rows, flops = [], {}
    for variant in ("full", "fullres"):
        c = step_counts(variant, s.step_crop, s.step_batch, size, s.params)
        flops[variant] = c["gflop_per_sample"]
        rows += [
            (f"{variant}: GFLOP per sample (forward + backward)", f"{flops[variant]:.1f}", "GFLOP"),
            (f"{variant}: host-to-device copies per step", str(c["uploads"]), ""),
            (f"{variant}: device reads by the host per step", str(c["syncs"]), ""),
        ]
    rows.append(("full / fullres FLOPs per sample", f"{flops['full'] / flops['fullres']:.2f}", "x"))
    if s.device != "cpu" or s.cpu_steps:
        rate = {
            v: step_speed(
                v, s.step_crop, s.step_batch, size, s.device, s.steps, s.precision, s.params
            )
            for v in ("full", "fullres")
        }
        rows += [
            (f"{v}: model step samples/s on {s.device}, {s.precision}", f"{r:.1f}", "1/s")
            for v, r in rate.items()
        ]
        rows.append(("full / fullres samples/s", f"{rate['full'] / rate['fullres']:.2f}", "x"))
    return rows


# --- end to end on this CPU: `glsgn train` under each precision and memory format ---


def settings_section(s: Setup) -> list[Row]:
    """Samples/s of whole `glsgn train` runs (start-up, loading, steps, one validation and the
    checkpoints included: what a user waits for) on params.yaml's data size and model, one run
    per setting, each on the same prepared pairs, after one untimed warm-up run. bf16 is timed
    only where this CPU runs it in hardware: elsewhere train.py trains in fp32 whatever
    train.precision says."""
    if torch.cuda.is_available():  # train() would take the GPU: these rows are the CPU's
        return [("settings", "not timed: CUDA is present and glsgn train would use it", "")]
    params = load_params(ROOT / "params.yaml")
    work = s.cache.parent / "settings"
    splits = dataclasses.replace(params.data.splits, train=8, val=1, test=1)
    data = dataclasses.replace(params.data, splits=splits)
    params = dataclasses.replace(params, data=data)
    prepare("reflection", params, ROOT / "data" / "raw", work / "data/prepared/reflection", False)
    settings = {"fp32": ("fp32", False), "fp32 + channels_last": ("fp32", True)}
    if native_bf16():
        settings |= {"bf16": ("bf16", False), "bf16 + channels_last": ("bf16", True)}
    rows, base = [], None
    # an untimed first run builds the shared data cache and warms the kernels up
    for label, (precision, channels_last) in {"warm-up": ("fp32", False), **settings}.items():
        tcfg = dataclasses.replace(
            params.train,
            seeds=(0,),
            steps=s.train_steps,
            val_every=s.train_steps,
            checkpoint_every=s.train_steps,
            curve_every=None,
            precision=precision,
            channels_last=channels_last,
        )
        run_dir = work / label.replace(" + ", "-")
        run_dir.mkdir()
        (run_dir / "data").symlink_to(work / "data")
        t0 = time.perf_counter()
        train("reflection-full", dataclasses.replace(params, train=tcfg), run_dir, progress=False)
        rate = s.train_steps * tcfg.batch_size / (time.perf_counter() - t0)
        if label == "warm-up":
            continue
        base = base or rate
        rows.append((f"glsgn train, {label}", f"{rate:.2f} ({rate / base:.2f}x)", "samples/s"))
    if not native_bf16():
        rows.append(("bf16", "not timed: this CPU has no native bf16 (train.py uses fp32)", ""))
    return rows


def terms_section(s: Setup) -> list[Row]:
    """Where one training step of `full` goes on `s.device`: the model's forward, its forward
    and backward (loss: the output's mean), the whole step, and the whole step with each loss
    term weighted 0 in turn; a term costs what switching it off saves."""
    args = (s.step_crop, s.step_batch, s.image_size, s.precision, s.params)
    model, loss_fn, _, b, step = step_setup("full", s.device, *args)

    def forward() -> None:
        with torch.no_grad():
            model(b.x, global_view=b.x_global, region=b.region)

    def forward_backward() -> None:
        model(b.x, global_view=b.x_global, region=b.region).b_out.mean().backward()

    whole = _timed(step, s.steps, s.device)
    rows = [
        ("model forward (no grad)", f"{_timed(forward, s.steps, s.device):.3f}", "s/step"),
        (
            "model forward + backward",
            f"{_timed(forward_backward, s.steps, s.device):.3f}",
            "s/step",
        ),
        ("whole training step (every term)", f"{whole:.3f}", "s/step"),
    ]
    for term, weight in loss_fn.weights.items():
        if weight <= 0:
            continue
        t = _timed(step_setup("full", s.device, *args, without=term)[-1], s.steps, s.device)
        rows.append((f"step without {term} (saves)", f"{t:.3f} ({whole - t:+.3f})", "s/step"))
    return rows


# Each section takes the Setup and returns rows for the table.
SECTIONS: dict[str, Callable[[Setup], list[Row]]] = {
    "data": data_section,
    "step": step_section,
    "settings": settings_section,
    "terms": terms_section,
}


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
    p.add_argument(
        "--sections", nargs="+", default=["data", "step", "settings"], choices=list(SECTIONS)
    )
    p.add_argument("--step-crop", type=int, default=512, help="model step: crop side")
    p.add_argument("--step-batch", type=int, default=4, help="model step: batch size")
    p.add_argument("--steps", type=int, default=20, help="model step: timed steps")
    p.add_argument("--device", default="cpu", help="model step: where it is timed")
    p.add_argument("--cpu-steps", action="store_true", help="time the model step on the CPU too")
    p.add_argument(
        "--precision", choices=("fp32", "bf16", "fp16"), help="model step (default: params.yaml's)"
    )
    p.add_argument("--train-steps", type=int, default=48, help="settings: steps of each run")
    p.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="step sections")
    args = p.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="train_throughput.") as tmp:
        t0 = time.perf_counter()
        root = Path(tmp) / "train"
        if "data" in args.sections:
            write_pairs(root, args.pairs, h, w)
            print(
                f"wrote {args.pairs} pairs of {w}x{h} in {time.perf_counter() - t0:.1f} s (untimed)"
            )
        setup = Setup(
            root,
            Path(tmp) / "cache",
            args.crop or None,
            args.multiple,
            args.global_scale,
            args.batch,
            args.samples,
            args.uncached_samples,
            (h, w),
            args.step_crop,
            args.step_batch,
            args.steps,
            args.device,
            args.precision or load_params(args.params).train.precision,
            args.cpu_steps,
            args.train_steps,
            args.params,
        )
        print(
            f"\n{args.pairs} pairs {w}x{h}, crop {args.crop or 'whole image'}, multiple "
            f"{args.multiple}, global scale {args.global_scale}, one process\n"
        )
        print("| section | what | value | unit |\n|---|---|---|---|")
        for name in args.sections:
            for what, value, unit in SECTIONS[name](setup):
                print(f"| {name} | {what} | {value} | {unit} |", flush=True)


if __name__ == "__main__":
    main()
