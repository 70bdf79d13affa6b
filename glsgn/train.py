"""Training, top to bottom: `glsgn train RUN --seed S` (the train@RUN-S stage).

AdamW with linear warm-up and cosine decay, gradient clipping, a moving average of the weights,
channels_last, and bf16 autocast on CUDA and on CPUs that run bf16 in hardware; deterministic on
the CPU. Batches are a pure function of (seed, step), and a resumable checkpoint is written
every `train.checkpoint_every` steps, so a killed run started again continues where it stopped
and ends with the weights an uninterrupted run would have. Runs unchanged under
`torchrun --nproc_per_node=N` (DDP: nccl on GPUs, gloo on CPUs).

`train` is the whole loop, in order. The pieces a benchmark times as training runs them are
public: `train_step`, `lr_schedule`, `autocast_for`, `update_ema` and `StepBatches`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from .atomic import atomic_write
from .checkpoint import config_dict, config_diffs, save_checkpoint
from .config import Params, TrainConfig, autocast_dtype
from .data.datasets import PairedImages, TrainCrops
from .losses import GLSGNLoss, TrainBatch
from .metrics import psnr, psnr_ssim
from .model import build_model
from .model.resample import Region, round_up
from .restore import restore
from .runs import Run, native_bf16, start

__all__ = [
    "train",
    "train_step",
    "lr_schedule",
    "autocast_for",
    "update_ema",
    "loader_workers",
    "StepBatches",
    "TrainError",
]

log = logging.getLogger(__name__)

# train.precision's words for the arithmetic a run computes in (fp32: no autocast)
_PRECISION = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
# TrainConfig fields that say which runs and seeds train: each one is another stage's, so a
# checkpoint's train_config leaves them out and adding a run or a seed does not stop this one
# resuming
_OTHER_STAGES = ("variants", "variant_tasks", "term_tasks", "seeds")


class TrainError(RuntimeError):
    """Training cannot start or resume; the message says why and what to do."""


class StepBatches(Sampler):
    """Batch b (from `start`) holds positions [b*B, (b+1)*B) of an endless sequence of seeded
    permutations, one per epoch; a rank takes every world-th item of each global batch.
    Items are (index, epoch, batch) so that TrainCrops seeds each crop from them."""

    def __init__(self, n: int, batch: int, seed: int, start: int, steps: int, rank=0, world=1):
        self.n, self.batch, self.seed = n, batch, seed
        self.start, self.steps, self.rank, self.world = start, steps, rank, world

    def _position(self, p: int) -> tuple[int, int]:
        epoch, i = divmod(p, self.n)
        return int(np.random.default_rng([self.seed, epoch]).permutation(self.n)[i]), epoch

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        gb = self.batch * self.world
        for step in range(self.start, self.steps):
            items = [self._position(step * gb + j) for j in range(gb)]
            yield [(i, e, step) for i, e in items[self.rank :: self.world]]

    def __len__(self) -> int:
        return self.steps - self.start


def lr_schedule(tcfg: TrainConfig) -> Callable[[int], float]:
    """LambdaLR's factor at each step: linear warm-up over train.warmup steps, then cosine
    decay to train.lr_min at train.steps."""

    def factor(step: int) -> float:
        if step < tcfg.warmup:
            return (step + 1) / tcfg.warmup
        t = (step - tcfg.warmup) / max(1, tcfg.steps - tcfg.warmup)
        floor = tcfg.lr_min / tcfg.lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return factor


def autocast_for(precision: str, device: torch.device, rank: int = 0) -> torch.dtype | None:
    """train.precision on this device. CUDA autocasts as asked; a CPU autocasts to bf16 only
    when it runs bf16 in hardware (`native_bf16`), and fp16 never (no fast CPU kernels)."""
    amp = autocast_dtype(precision)
    if device.type == "cuda" or amp is None:
        return amp
    if amp == torch.bfloat16 and native_bf16():
        return amp
    log.log(
        logging.INFO if rank == 0 else logging.DEBUG,
        "train.precision %s: no native %s on this CPU, fp32 instead",
        precision,
        precision,
    )
    return None


def train_step(
    net: torch.nn.Module,
    batch: TrainBatch,
    loss_fn: GLSGNLoss,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    clip: float,
    amp: torch.dtype | None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One optimiser step; -> (loss terms, gradient norm before clipping), both still on the
    device, so that a step reads nothing back (the loop reads them on log steps only)."""
    with torch.autocast(batch.x.device.type, dtype=amp, enabled=amp is not None):
        out = net(batch.x, global_view=batch.x_global, region=batch.region)
        terms = loss_fn(out, batch)
    opt.zero_grad(set_to_none=True)
    scaler.scale(terms["total"]).backward()
    scaler.unscale_(opt)  # clip the true gradient, not fp16's scaled one
    grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    scaler.step(opt)
    scaler.update()
    sched.step()
    return terms, grad_norm


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> None:
    """ema <- d ema + (1 - d) model, d warmed up as (1 + step) / (10 + step): early steps'
    weights, far from trained, do not linger in the average."""
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - d)
    for b, m in zip(ema.buffers(), model.buffers(), strict=True):
        b.copy_(m)


def train(
    name: str,
    params: Params,
    root: Path = Path("."),
    seed: int | None = None,
    stop_at: int | None = None,
    progress: bool = True,
) -> Path | None:
    """Train run `name` (TASK-VARIANT) at `seed` of train.seeds (default: the first); returns
    models/RUN/seedSEED.pt. `stop_at` ends the process's work after that step, as a kill
    would (for tests and preemption drills), and returns None."""
    run, tcfg = Run.of(params, name, seed), params.train
    mcfg = run.model_cfg

    # -- the device, and under torchrun the process group --
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # every step has the same shapes
    else:
        device = torch.device("cpu")
        torch.use_deterministic_algorithms(True)
    start(run, "train", device, rank)  # seeds torch's generator

    # -- model, loss, data, optimiser: in this order, since the model and the loss's backbone
    # draw their weights from torch's generator and a run at a seed must draw the same ones --
    amp = autocast_for(tcfg.precision, device, rank)
    model = build_model(mcfg).to(device)
    if tcfg.channels_last:  # oneDNN and cuDNN convolutions are fastest in NHWC
        model = model.to(memory_format=torch.channels_last)
    loss_fn = GLSGNLoss(run.loss_cfg).to(device)
    data = TrainCrops(
        root / run.split("train"),
        tcfg.crop,
        model.pad_multiple,
        mcfg.global_scale,
        seed=run.seed,
        cache=root / "data" / "cache" if tcfg.cache else None,
        progress=progress,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(tcfg))
    scaler = torch.amp.GradScaler(enabled=amp == torch.float16)  # fp16 alone needs scaling
    ema = copy.deepcopy(model).requires_grad_(False) if tcfg.ema > 0 else None
    released = ema if ema is not None else model  # what validation measures and release holds

    # -- resume: what a checkpoint must match to continue this run --
    ckpt_path = root / run.paths.checkpoint
    recipe = {
        # what it computed in: train.precision falls back to fp32 on some CPUs, so a run
        # resumed on another machine could otherwise switch arithmetic half way
        "computes_in": _PRECISION[amp],
        "model_config": config_dict(mcfg),
        "train_config": {**config_dict(tcfg, skip=_OTHER_STAGES), "seed": run.seed},
    }
    first = 0
    saved = _resumable(ckpt_path, device, tcfg.steps, recipe)
    if saved is not None:
        model.load_state_dict(saved["model"])
        if ema is not None:
            ema.load_state_dict(saved["ema"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        first = saved["step"]
        log.info("resuming from step %d (%s)", first, ckpt_path)

    sb = loss_fn.backbone
    backbone, backbone_kind = (sb.source, sb.kind) if sb is not None else ("not used",) * 2
    workers = loader_workers(tcfg, device)
    log.log(
        logging.INFO if rank == 0 else logging.DEBUG,
        "train %s seed %d: %d params, %d train pairs%s, steps %d from %d, batch %d x %d, crop %s, "
        "lr %g, %d loader workers%s; semantic backbone: %s",
        run.name,
        run.seed,
        sum(q.numel() for q in model.parameters()),
        len(data),
        f", {tcfg.precision} autocast" if amp else "",
        tcfg.steps,
        first,
        tcfg.batch_size,
        world,
        tcfg.crop or "whole image",
        tcfg.lr,
        workers,
        ", channels_last" if tcfg.channels_last else "",
        backbone,
    )
    _warn_small_crop(model, tcfg.crop)
    net = DistributedDataParallel(model) if world > 1 else model

    live = None  # rank 0 alone logs, validates and measures the curve
    if rank == 0:
        live = _live(root / run.paths.live, resume_at=first)
        live.log_params(
            {
                "run": run.name,
                "seed": run.seed,
                "task": run.spec.task,
                "variant": run.spec.variant,
                "semantic_backbone": backbone,
            }
        )
    # steps first.. see the batches a run from step 0 sees at them (StepBatches)
    loader = DataLoader(
        data,
        batch_sampler=StepBatches(
            len(data), tcfg.batch_size, run.seed, first, tcfg.steps, rank, world
        ),
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    bar = tqdm(
        total=tcfg.steps,
        initial=first,
        desc=f"train {name} seed {run.seed}",
        unit="step",
        disable=not progress or rank != 0,
    )

    # samples/s over each log interval, less the time validating and saving, which is not
    # training time (the first interval includes start-up)
    since, since_step, paused = time.perf_counter(), first, 0.0
    for step, b in zip(range(first, tcfg.steps), loader, strict=True):
        model.train()
        batch = TrainBatch(
            *(
                b[k].to(device, non_blocking=True)
                for k in ("input", "target", "input_global", "target_global")
            ),
            region=Region(tuple(b["size"][0].tolist()), tuple(b["box"][0].tolist())),
        )
        terms, grad_norm = train_step(net, batch, loss_fn, opt, sched, scaler, tcfg.clip, amp)
        done = step + 1
        if ema is not None:
            update_ema(ema, model, tcfg.ema, done)
        bar.update()
        last = done == tcfg.steps

        # reading a loss waits for the device: only on log steps
        if live is not None and (done % tcfg.log_every == 0 or last):
            live.step = done
            for k, v in terms.items():
                live.log_metric(f"train/{k}", float(v.detach()))
            live.log_metric("train/lr", sched.get_last_lr()[0])
            live.log_metric("train/grad_norm", float(grad_norm))
            now = time.perf_counter()
            rate = (done - since_step) * tcfg.batch_size * world / (now - since - paused)
            since, since_step, paused = now, done, 0.0
            live.log_metric("train/samples_per_s", rate)
            if device.type == "cuda":
                live.log_metric("train/peak_cuda_mb", torch.cuda.max_memory_allocated() / 2**20)
            bar.set_postfix(loss=f"{float(terms['total'].detach()):.4f}")
            live.make_summary()

        pause_from = time.perf_counter()
        if live is not None and tcfg.val_every and (done % tcfg.val_every == 0 or last):
            live.step = done
            val = _mean_score(released, root / run.split("val"), device, psnr, tcfg.monitor_images)
            live.log_metric("val/psnr", float(val))  # what the plateau rule reads
            live.make_summary()
        if live is not None and tcfg.curve_every and (done % tcfg.curve_every == 0 or last):
            # the learning curve: test PSNR/SSIM against samples seen; it chooses nothing
            live.step = done
            split = root / run.split("test")
            test = _mean_score(released, split, device, psnr_ssim, tcfg.monitor_images)
            live.log_metric("test/psnr", float(test[0]))
            live.log_metric("test/ssim", float(test[1]))
            live.log_metric("test/samples", done * tcfg.batch_size * world)
            live.make_summary()
        if rank == 0 and (done % tcfg.checkpoint_every == 0 or last):
            state = {
                "ema": ema.state_dict() if ema is not None else None,
                "computes_in": recipe["computes_in"],
                "format": "glsgn-train-state",
                "run": run.name,
                "step": done,
                "model_config": recipe["model_config"],
                "train_config": recipe["train_config"],
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
            }
            ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(ckpt_path) as f:
                torch.save(state, f)
        paused += time.perf_counter() - pause_from

        if stop_at is not None and done >= stop_at:
            bar.close()
            return None  # as a kill would stop it: no release, the group left as it is
    bar.close()

    # -- the release checkpoint: what evaluation and `glsgn restore` load --
    out_path = root / run.paths.model
    if rank == 0:
        save_checkpoint(
            out_path,
            released,
            extra={
                "run": run.name,
                "seed": run.seed,
                "task": run.spec.task,
                "variant": run.spec.variant,
                "steps": tcfg.steps,
                "ema": tcfg.ema,
                "precision": _PRECISION[amp],
                "loss": dataclasses.asdict(run.loss_cfg),
                "semantic_backbone": backbone_kind,
                "semantic_backbone_detail": backbone,
            },
        )
        live.end()
        log.info("saved %s after %d steps", out_path, tcfg.steps)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out_path


def _resumable(path: Path, device: torch.device, steps: int, recipe: dict) -> dict | None:
    """The resumable state at `path` when it belongs to this very run (`recipe`: the keys it
    must match) and is unfinished; None when there is none. Mismatches are TrainErrors."""
    if not path.exists():
        return None
    state = torch.load(path, map_location=device, weights_only=True)
    if state["step"] >= steps:
        # A finished run is trained again only when something it depends on changed
        # (that is when DVC reruns the stage): start over rather than reuse old weights.
        log.info("%s holds a finished run: starting over", path)
        return None
    was, here = state.get("computes_in", "fp32"), recipe["computes_in"]
    if was != here:
        raise TrainError(
            f"{path}: saved by a run computing in {was}, but this machine computes in {here} "
            "(train.precision falls back to fp32 on a CPU without native bf16); resume it "
            "where it started, or delete it to start over"
        )
    for key in ("model_config", "train_config"):
        diffs = config_diffs(state[key], recipe[key])
        if diffs:
            raise TrainError(
                f"{path}: saved with a different {key.split('_')[0]} configuration "
                f"({'; '.join(diffs)}); delete it to start over, or restore the parameters it "
                "was saved with"
            )
    return state


def _mean_score(
    model: torch.nn.Module,
    split: Path,
    device: torch.device,
    score: Callable[[np.ndarray, np.ndarray], float | tuple[float, ...]],
    limit: int | None = None,
) -> np.ndarray:
    """Mean `score(restored, target)` over the pairs of a split (the first `limit` of them),
    each restored at full resolution as evaluation restores it."""
    patch = "auto" if device.type == "cuda" else None  # the whole image when it fits
    scores = []
    pairs = PairedImages(split)
    for i in range(min(len(pairs), limit or len(pairs))):
        it = pairs[i]
        out = restore(model, it["input"], device=device, patch_size=patch, progress=False)
        scores.append(score(out, it["target"]))
    return np.mean(scores, axis=0)


def loader_workers(tcfg: TrainConfig, device: torch.device) -> int:
    """train.workers, or for null: on CUDA one loader process per spare core (up to 8), so
    the GPU sets the pace; on the CPU none, since a worker would take a core from the step."""
    if tcfg.workers is not None:
        return tcfg.workers
    if device.type != "cuda":
        return 0
    return max(1, min(8, len(os.sched_getaffinity(0)) - 1))


def _warn_small_crop(model: torch.nn.Module, crop: int | None) -> None:
    """Say so when a step's crop is all border: its output near the crop's edge depends on
    the zero padding there, which whole-image inference never sees."""
    if crop is None:
        return
    # the smallest crop every step sees some of away from its border, on the crop grid
    valid = round_up(max((2 * s.radius + 1) * s.factor for s in model.plan), model.pad_multiple)
    for step in model.plan:
        side = crop // step.factor
        if step.radius and side <= 2 * step.radius:
            log.warning(
                "train.crop %d: %s sees %d px and its receptive radius is %d px, so none of its "
                "crop is out of reach of the crop's border; its outputs will differ from "
                "whole-image inference (use train.crop: null, or %d or more)",
                crop,
                step.name,
                side,
                step.radius,
                valid,
            )
            return


def _collate(items: list[dict]) -> dict:
    sizes = {tuple(it["size"].tolist()) for it in items}
    boxes = {tuple(it["box"].tolist()) for it in items}
    if len(sizes) > 1:
        raise TrainError(
            f"a batch mixes image sizes {sorted(sizes)}: train.batch_size > 1 needs the images "
            "of a split to share one size; set train.batch_size: 1 for mixed sizes"
        )
    if len(boxes) > 1:  # TrainCrops draws one crop position per batch
        raise TrainError(f"a batch mixes crop positions {sorted(boxes)}")
    out = {k: torch.stack([it[k] for it in items]) for k in items[0] if k != "name"}
    out["name"] = [it["name"] for it in items]
    return out


class _LogOnly:
    """Stands in for dvclive where it is not installed (a bare GPU image): logs, writes nothing."""

    step = 0

    def log_params(self, params: dict) -> None:
        log.info("params %s", params)

    def log_metric(self, name: str, value: float) -> None:
        log.info("step %d %s %.6g", self.step, name, value)

    def make_summary(self) -> None:
        pass

    def end(self) -> None:
        pass


def _live(path: Path, resume_at: int):
    """dvclive's logger for a run starting at step `resume_at` (0: from scratch, the old logs
    cleared). A resumed run keeps what was logged up to its checkpoint and drops what the
    killed process logged after it, which this one logs again: the curves then equal an
    uninterrupted run's (dvc.yaml keeps them across a rerun with `persist: true`)."""
    try:
        from dvclive import Live
    except ImportError:
        log.warning("dvclive is not installed: metrics go to the log only")
        return _LogOnly()
    if resume_at:
        for tsv in (path / "plots").rglob("*.tsv"):
            lines = tsv.read_text().splitlines(keepends=True)
            col = lines[0].rstrip("\n").split("\t").index("step")
            kept = lines[:1] + [
                ln for ln in lines[1:] if int(float(ln.split("\t")[col])) <= resume_at
            ]
            if len(kept) < len(lines):
                with atomic_write(tsv) as f:
                    f.write("".join(kept).encode())
    return Live(str(path), resume=resume_at > 0, save_dvc_exp=False, dvcyaml=False, report=None)
