"""Training, top to bottom: `glsgn train RUN --seed S` (the train@RUN-S stage).

AdamW with linear warm-up and cosine decay, gradient clipping, a moving average of the weights,
channels_last, and bf16 autocast on CUDA and on CPUs that run bf16 in hardware; deterministic on
the CPU. Batches are a pure function of (seed, step), and a
resumable checkpoint is written every `train.checkpoint_every` steps, so a killed run started
again continues where it stopped and ends with the weights an uninterrupted run would have.
Runs unchanged under `torchrun --nproc_per_node=N` (DDP: nccl on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import os
import time
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
from .model.resample import Region
from .restore import restore
from .runs import Run, native_bf16, start

__all__ = ["train", "TrainError"]

log = logging.getLogger(__name__)


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

    def __iter__(self):
        gb = self.batch * self.world
        for step in range(self.start, self.steps):
            items = [self._position(step * gb + j) for j in range(gb)]
            yield [(i, e, step) for i, e in items[self.rank :: self.world]]

    def __len__(self) -> int:
        return self.steps - self.start


def _warn_small_crop(model, crop: int | None) -> None:
    """Say so when a step's crop is all border: its output near the crop's edge depends on
    the zero padding there, which whole-image inference never sees."""
    if crop is None:
        return
    for step in model.plan:
        side = crop // step.factor
        if step.radius and side <= 2 * step.radius:
            log.warning(
                "train.crop %d: %s sees %d px and its receptive radius is %d px, so none of its "
                "crop is out of reach of the crop's border; its outputs will differ from "
                "whole-image inference (use train.crop: null, or >= %d)",
                crop,
                step.name,
                side,
                step.radius,
                (2 * step.radius + 1) * step.factor,
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


def _lr_lambda(cfg) -> callable:
    def f(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        floor = cfg.lr_min / cfg.lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


def _restored(model, root: Path, device: torch.device):
    """(restored, target) of each pair of a split, restored at full resolution as evaluation
    restores them."""
    patch = "auto" if device.type == "cuda" else None  # the whole image when it fits
    for it in PairedImages(root):
        out = restore(model, it["input"], device=device, patch_size=patch, progress=False)
        yield out, it["target"]


def _validate(model, root: Path, device: torch.device) -> float:
    """Mean PSNR of the val split (what the plateau rule reads)."""
    return float(np.mean([psnr(out, target) for out, target in _restored(model, root, device)]))


def _curve(model, root: Path, device: torch.device) -> tuple[float, float]:
    """Mean PSNR and SSIM of the test split: a point of the learning curve, never used to
    choose anything during training."""
    scores = [psnr_ssim(out, target) for out, target in _restored(model, root, device)]
    return tuple(float(v) for v in np.mean(scores, axis=0))


def _autocast(precision: str, device: torch.device, rank: int = 0) -> torch.dtype | None:
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


def _precision(amp: torch.dtype | None) -> str:
    """The arithmetic a run computes in, in train.precision's words (fp32: no autocast)."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp]


def _state(
    model, opt, sched, step: int, run: str, seed: int, mcfg, tcfg, ema=None, amp=None
) -> dict:
    return {
        "ema": ema.state_dict() if ema is not None else None,
        # what it computed in: train.precision falls back to fp32 on some CPUs, so a run
        # resumed on another machine could otherwise switch arithmetic half way
        "computes_in": _precision(amp),
        "format": "glsgn-train-state",
        "run": run,
        "step": step,
        "model_config": config_dict(mcfg),
        # the runs and the other seeds are other stages: adding one must not stop this resuming
        "train_config": {**config_dict(tcfg, skip=("runs", "seeds")), "seed": seed},
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
    }


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


def _live(path: Path, resume: bool):
    try:
        from dvclive import Live
    except ImportError:
        log.warning("dvclive is not installed: metrics go to the log only")
        return _LogOnly()
    return Live(str(path), resume=resume, save_dvc_exp=False, dvcyaml=False, report=None)


def _workers(tcfg: TrainConfig, device: torch.device) -> int:
    """train.workers, or for null: on CUDA one loader process per spare core (up to 8), so
    the GPU sets the pace; on the CPU none, since a worker would take a core from the step."""
    if tcfg.workers is not None:
        return tcfg.workers
    if device.type != "cuda":
        return 0
    return max(1, min(8, len(os.sched_getaffinity(0)) - 1))


def _device() -> tuple[torch.device, int, int]:
    """(device, rank, world size); joins the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # every step has the same shapes
    else:
        device = torch.device("cpu")
        torch.use_deterministic_algorithms(True)
    return device, rank, world


def _resume(path: Path, model, opt, sched, now: dict, ema=None) -> int:
    """Load the resumable state at `path` when it belongs to this very run; -> its step."""
    if not path.exists():
        return 0
    state = torch.load(path, map_location=next(model.parameters()).device, weights_only=True)
    if state["step"] >= now["train_config"]["steps"]:
        # A finished run is trained again only when something it depends on changed
        # (that is when DVC reruns the stage): start over rather than reuse old weights.
        log.info("%s holds a finished run: starting over", path)
        return 0
    was, here = state.get("computes_in", "fp32"), now["computes_in"]
    if was != here:
        raise TrainError(
            f"{path}: saved by a run computing in {was}, but this machine computes in {here} "
            "(train.precision falls back to fp32 on a CPU without native bf16); resume it "
            "where it started, or delete it to start over"
        )
    for key in ("model_config", "train_config"):
        diffs = config_diffs(state[key], now[key])
        if diffs:
            raise TrainError(
                f"{path}: saved with a different {key.split('_')[0]} configuration "
                f"({'; '.join(diffs)}); delete it to start over, or restore the parameters it "
                "was saved with"
            )
    model.load_state_dict(state["model"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    log.info("resuming from step %d (%s)", state["step"], path)
    return state["step"]


def _step(net, model, loss_fn, opt, sched, scaler, batch: TrainBatch, amp, tcfg) -> tuple:
    """One optimiser step; -> (loss terms, gradient norm), both still on the device."""
    with torch.autocast(batch.x.device.type, dtype=amp, enabled=amp is not None):
        out = net(batch.x, global_view=batch.x_global, region=batch.region)
        terms = loss_fn(out, batch)
    opt.zero_grad(set_to_none=True)
    scaler.scale(terms["total"]).backward()
    scaler.unscale_(opt)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.clip)
    scaler.step(opt)
    scaler.update()
    sched.step()
    return terms, grad_norm


@torch.no_grad()
def _update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> None:
    """ema <- d ema + (1 - d) model, d warmed up as (1 + step) / (10 + step): early steps'
    weights, far from trained, do not linger in the average."""
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - d)
    for b, m in zip(ema.buffers(), model.buffers(), strict=True):
        b.copy_(m)


def _to_device(b: dict, device: torch.device) -> TrainBatch:
    size, box = b["size"][0].tolist(), b["box"][0].tolist()
    return TrainBatch(
        *(
            b[k].to(device, non_blocking=True)
            for k in ("input", "target", "input_global", "target_global")
        ),
        region=Region(tuple(size), tuple(box)),
    )


@dataclasses.dataclass
class _Parts:
    """What a run's steps work on."""

    run: Run
    tcfg: TrainConfig
    device: torch.device
    rank: int
    world: int
    model: torch.nn.Module
    loss_fn: GLSGNLoss
    data: TrainCrops
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    amp: torch.dtype | None
    ema: torch.nn.Module | None  # the weights' moving average (train.ema > 0)

    @property
    def released(self) -> torch.nn.Module:
        """What validation measures and the release checkpoint holds: the average, if any."""
        return self.ema if self.ema is not None else self.model


def _build(
    run: Run,
    tcfg: TrainConfig,
    device: torch.device,
    rank: int,
    world: int,
    root: Path,
    progress: bool,
) -> _Parts:
    """The model, loss, training crops and optimiser of `run`. Built in this order, because the
    model and the loss's backbone draw their weights from torch's generator: a run at a seed
    draws the same weights every time."""
    amp = _autocast(tcfg.precision, device, rank)
    mcfg, lcfg = run.model_cfg, run.loss_cfg
    model = build_model(mcfg).to(device)
    if tcfg.channels_last:  # oneDNN and cuDNN convolutions are fastest in NHWC
        model = model.to(memory_format=torch.channels_last)
    loss_fn = GLSGNLoss(lcfg).to(device)
    ds = TrainCrops(
        root / run.split("train"),
        tcfg.crop,
        model.pad_multiple,
        mcfg.global_scale,
        seed=run.seed,
        cache=root / "data" / "cache",
        progress=progress,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(tcfg))
    scaler = torch.amp.GradScaler(enabled=amp == torch.float16)
    ema = copy.deepcopy(model).requires_grad_(False) if tcfg.ema > 0 else None
    return _Parts(run, tcfg, device, rank, world, model, loss_fn, ds, opt, sched, scaler, amp, ema)


def _run_state(p: _Parts, step: int) -> dict:
    run = p.run
    return _state(
        p.model, p.opt, p.sched, step, run.name, run.seed, run.model_cfg, p.tcfg, p.ema, p.amp
    )


def _backbone(loss_fn: GLSGNLoss) -> tuple[str, str]:
    """(where the semantic term's backbone came from, its kind), for the log and the release."""
    sb = loss_fn.backbone
    return (sb.source, sb.kind) if sb is not None else ("not used",) * 2


def _describe(p: _Parts, first: int, workers: int, backbone: str) -> None:
    tcfg = p.tcfg
    log.log(
        logging.INFO if p.rank == 0 else logging.DEBUG,
        "train %s seed %d: %d params, %d train pairs%s, steps %d from %d, batch %d x %d, crop %s, "
        "lr %g, %d loader workers%s; semantic backbone: %s",
        p.run.name,
        p.run.seed,
        sum(q.numel() for q in p.model.parameters()),
        len(p.data),
        f", {tcfg.precision} autocast" if p.amp else "",
        tcfg.steps,
        first,
        tcfg.batch_size,
        p.world,
        tcfg.crop or "whole image",
        tcfg.lr,
        workers,
        ", channels_last" if tcfg.channels_last else "",
        backbone,
    )


def _open_live(path: Path, run: Run, resume: bool, backbone: str):
    live = _live(path, resume)
    live.log_params(
        {
            "run": run.name,
            "seed": run.seed,
            "task": run.spec.task,
            "variant": run.spec.variant,
            "semantic_backbone": backbone,
        }
    )
    return live


def _loader(p: _Parts, first: int, workers: int) -> DataLoader:
    """The batches of steps `first`.. (StepBatches: the same ones a run from step 0 sees)."""
    sampler = StepBatches(
        len(p.data), p.tcfg.batch_size, p.run.seed, first, p.tcfg.steps, p.rank, p.world
    )
    return DataLoader(
        p.data,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=p.device.type == "cuda",
        persistent_workers=False,
    )


class _Throughput:
    """Samples per second over each log interval, less the time spent validating and saving,
    which is not training time (the first interval includes start-up)."""

    def __init__(self, step: int, batch: int, world: int):
        self.t, self.step, self.paused = time.perf_counter(), step, 0.0
        self.batch, self.world = batch, world

    def rate(self, done: int) -> float:
        """Over the steps since the last call; starts the next interval."""
        now = time.perf_counter()
        rate = (done - self.step) * self.batch * self.world / (now - self.t - self.paused)
        self.t, self.step, self.paused = now, done, 0.0
        return rate

    @contextlib.contextmanager
    def pause(self):
        t0 = time.perf_counter()
        yield
        self.paused += time.perf_counter() - t0


def _log_train(live, bar, p: _Parts, done: int, terms: dict, grad_norm, clock: _Throughput):
    live.step = done
    for k, v in terms.items():
        live.log_metric(f"train/{k}", float(v.detach()))
    live.log_metric("train/lr", p.sched.get_last_lr()[0])
    live.log_metric("train/grad_norm", float(grad_norm))
    live.log_metric("train/samples_per_s", clock.rate(done))
    if p.device.type == "cuda":
        live.log_metric("train/peak_cuda_mb", torch.cuda.max_memory_allocated() / 2**20)
    bar.set_postfix(loss=f"{float(terms['total'].detach()):.4f}")
    live.make_summary()


def _log_validation(live, p: _Parts, root: Path, done: int) -> None:
    live.step = done
    live.log_metric("val/psnr", _validate(p.released, root / p.run.split("val"), p.device))
    live.make_summary()


def _log_curve(live, p: _Parts, root: Path, done: int) -> None:
    live.step = done
    test_psnr, test_ssim = _curve(p.released, root / p.run.split("test"), p.device)
    live.log_metric("test/psnr", test_psnr)
    live.log_metric("test/ssim", test_ssim)
    live.log_metric("test/samples", done * p.tcfg.batch_size * p.world)
    live.make_summary()


def _save_state(path: Path, p: _Parts, done: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        torch.save(_run_state(p, done), f)


def _steps(
    p: _Parts, net, loader: DataLoader, live, bar, root: Path, first: int, stop_at: int | None
) -> bool:
    """Steps `first`.. with their logging, validation and resumable state; -> False when
    stopped at `stop_at`, as a kill would stop them."""
    tcfg = p.tcfg
    clock = _Throughput(first, tcfg.batch_size, p.world)
    for step, b in zip(range(first, tcfg.steps), loader, strict=True):
        p.model.train()
        terms, grad_norm = _step(
            net, p.model, p.loss_fn, p.opt, p.sched, p.scaler, _to_device(b, p.device), p.amp, tcfg
        )
        done = step + 1
        if p.ema is not None:
            _update_ema(p.ema, p.model, p.tcfg.ema, done)
        bar.update()
        last = done == tcfg.steps
        # reading a loss waits for the device: only on log steps
        if live is not None and (done % tcfg.log_every == 0 or last):
            _log_train(live, bar, p, done, terms, grad_norm, clock)
        with clock.pause():
            if live is not None and (done % tcfg.val_every == 0 or last):
                _log_validation(live, p, root, done)
            if live is not None and tcfg.curve_every and (done % tcfg.curve_every == 0 or last):
                _log_curve(live, p, root, done)
            if p.rank == 0 and (done % tcfg.checkpoint_every == 0 or last):
                _save_state(root / p.run.paths.checkpoint, p, done)
        if stop_at is not None and done >= stop_at:
            return False
    return True


def _release(p: _Parts, root: Path, live, backbone: str, backbone_kind: str) -> Path:
    """Save the release checkpoint (what evaluation and `glsgn restore` load)."""
    run, out_path = p.run, root / p.run.paths.model
    if p.rank == 0:
        save_checkpoint(
            out_path,
            p.released,
            extra={
                "run": run.name,
                "seed": run.seed,
                "task": run.spec.task,
                "variant": run.spec.variant,
                "steps": p.tcfg.steps,
                "ema": p.tcfg.ema,
                "precision": _precision(p.amp),
                "loss": dataclasses.asdict(run.loss_cfg),
                "semantic_backbone": backbone_kind,
                "semantic_backbone_detail": backbone,
            },
        )
        live.end()
        log.info("saved %s after %d steps", out_path, p.tcfg.steps)
    if p.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out_path


def train(
    name: str,
    params: Params,
    root: Path = Path("."),
    seed: int | None = None,
    stop_at: int | None = None,
    progress: bool = True,
) -> Path | None:
    """Train run `name` of train.runs at `seed` of train.seeds (default: the first); returns
    models/RUN/seedSEED.pt. `stop_at` ends the process's work after that step, as a kill
    would (for tests and preemption drills)."""
    run = Run.of(params, name, seed)
    device, rank, world = _device()
    start(run, "train", device, rank)
    p = _build(run, params.train, device, rank, world, root, progress)
    first = _resume(root / run.paths.checkpoint, p.model, p.opt, p.sched, _run_state(p, 0), p.ema)
    backbone, backbone_kind = _backbone(p.loss_fn)
    workers = _workers(p.tcfg, device)
    _describe(p, first, workers, backbone)
    _warn_small_crop(p.model, p.tcfg.crop)
    net = DistributedDataParallel(p.model) if world > 1 else p.model
    live = _open_live(root / run.paths.live, run, first > 0, backbone) if rank == 0 else None
    loader = _loader(p, first, workers)
    bar = tqdm(
        total=p.tcfg.steps,
        initial=first,
        desc=f"train {name} seed {run.seed}",
        unit="step",
        disable=not progress or rank != 0,
    )
    finished = _steps(p, net, loader, live, bar, root, first, stop_at)
    bar.close()
    return _release(p, root, live, backbone, backbone_kind) if finished else None
