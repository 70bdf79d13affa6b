"""A run of the pipeline: one run of glsgn.variants.runs trained at one seed of train.seeds.

`Run.of(params, name, seed)` is the one place that turns a run's name into what it is: its
spec (task and variant), its paths (dvc.yaml's outs of train@RUN-SEED and evaluate@RUN-SEED
spell the same ones) and the model and loss configs of its variant. Training, evaluation, the
results loaders, the notebooks and the scripts all read a run from here, and `start` is the
prologue every stage of a run begins with.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import ConfigError, LossConfig, ModelConfig, Params
from .variants import RunSpec, architecture, runs, variant_configs, variants

__all__ = ["Run", "RunError", "RunPaths", "start", "environment", "native_bf16"]

log = logging.getLogger(__name__)


class RunError(ConfigError):
    """A run or seed that params.yaml does not make; the message names it and the choices."""


@dataclass(frozen=True)
class RunPaths:
    """Where the pipeline keeps one run trained at one seed, relative to the repository.

    A notebook that reads one kind of output from elsewhere (its `metrics_dir` parameter, say)
    names that folder; the files inside it are named as the pipeline names them.
    """

    run: str
    seed: int
    models_dir: str | Path = "models"
    checkpoints_dir: str | Path = "checkpoints"
    dvclive_dir: str | Path = "dvclive"
    metrics_dir: str | Path = "metrics"
    restored_dir: str | Path = Path("reports", "restored")

    def under(self, base: str | Path) -> Path:
        """BASE/RUN/seedS: this run's entry in one of the pipeline's folders."""
        return Path(base) / self.run / f"seed{self.seed}"

    @property
    def model(self) -> Path:
        return self.under(self.models_dir).with_suffix(".pt")

    @property
    def checkpoint(self) -> Path:
        return self.under(self.checkpoints_dir) / "last.pt"

    @property
    def live(self) -> Path:
        return self.under(self.dvclive_dir)

    @property
    def metrics(self) -> Path:
        return self.under(self.metrics_dir).with_suffix(".json")

    @property
    def record(self) -> Path:
        """What the metrics were measured on: run, device, environment, conventions."""
        return self.under(self.metrics_dir).with_suffix(".record.json")

    @property
    def per_image(self) -> Path:
        return self.under(self.metrics_dir).with_suffix(".csv")

    @property
    def restored(self) -> Path:
        return self.under(self.restored_dir)


@dataclass(frozen=True)
class Run:
    """One run at one seed: what train@RUN-SEED trains and evaluate@RUN-SEED evaluates."""

    name: str
    seed: int
    spec: RunSpec
    paths: RunPaths
    model_cfg: ModelConfig  # params.yaml's `model`, changed as the variant's row says
    loss_cfg: LossConfig  # params.yaml's `loss`, likewise

    @classmethod
    def of(cls, params: Params, name: str, seed: int | None = None, **folders: str | Path) -> Run:
        """Run `name` (TASK-VARIANT, one of glsgn.variants.runs) at `seed` of train.seeds (None:
        the first). `folders` (models_dir=..., as `RunPaths`) move the run's paths out of the
        repository's folders."""
        made, seeds = runs(params), params.train.seeds
        if name not in made:
            raise RunError(f"run {name!r} is not one of params.yaml's runs ({', '.join(made)})")
        seed = seeds[0] if seed is None else seed
        if seed not in seeds:
            # The pipeline has no stage for it: its outputs would be no stage's outs.
            raise RunError(
                f"seed {seed!r} of run {name!r} is not in train.seeds "
                f"({', '.join(str(s) for s in seeds)})"
            )
        spec = made[name]
        model_cfg, loss_cfg = variant_configs(params, spec.variant)
        return cls(name, seed, spec, RunPaths(name, seed, **folders), model_cfg, loss_cfg)

    def split(self, split: str, data_dir: str | Path = Path("data", "prepared")) -> Path:
        """A split of the run's task's prepared data (what prepare@TASK writes)."""
        return Path(data_dir) / self.spec.task / split


def start(run: Run, stage: str, device: torch.device, rank: int = 0) -> None:
    """The prologue of every stage of a run: seed torch's generator with the run's seed,
    before anything draws from it, and log what runs, on which device, as which variant.
    Under torchrun only rank 0 says so (the others log it at debug level)."""
    torch.manual_seed(run.seed)
    what = variants()[run.spec.variant].what
    log.log(
        logging.INFO if rank == 0 else logging.DEBUG,
        "%s %s seed %d on %s: task %s, variant %s (%s; model: %s)",
        stage,
        run.name,
        run.seed,
        device,
        run.spec.task,
        run.spec.variant,
        what,
        architecture(run.model_cfg),
    )


def native_bf16() -> bool:
    """The CPU does bf16 matrix maths in hardware (AVX512-BF16 or AMX). Elsewhere oneDNN
    emulates bf16 in fp32 registers, slower than plain fp32, so training keeps fp32 there."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private: may go
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def environment(device: torch.device) -> dict:
    """What a metric's last bits depend on: torch, the CPU's vector ISA that torch and oneDNN
    dispatch to, the device and the threads (docs/results.md, "Reproducibility")."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    return {
        "torch": torch.__version__,
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16": native_bf16(),
        "dnnl_max_cpu_isa": os.environ.get("DNNL_MAX_CPU_ISA"),
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
