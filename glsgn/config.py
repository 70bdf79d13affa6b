"""params.yaml schema: typed, validated configuration, read in one place.

Every section is a frozen dataclass. Loading checks each key against the field's type hint and
each value against the field's range; anything wrong is a `ConfigError` that names the key
(``model.widths[1]``) and says what was expected.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

__all__ = [
    "ConfigError",
    "ModelConfig",
    "RestoreConfig",
    "DataConfig",
    "TrainConfig",
    "LossConfig",
    "EvaluateConfig",
    "BenchmarkConfig",
    "BENCHMARK_SIZES",
    "benchmark_size",
    "RunSpec",
    "TASKS",
    "Variant",
    "VARIANTS",
    "variant_configs",
    "Params",
    "load_params",
    "from_dict",
]

TASKS = ("reflection", "rain", "haze")
Range = tuple[float, float]


class ConfigError(ValueError):
    """A parameter is unknown, of the wrong type or out of range; the message names the key."""


def _require(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


@dataclass(frozen=True)
class ModelConfig:
    """Every size of the network (framework.png, LP.png). Defaults are the embedded CPU profile."""

    arch: Literal["glsgn", "fullres"] = "glsgn"
    widths: tuple[int, ...] = (16, 32, 64)  # channels per U-Net level, shared by all pathways
    blocks: int = 1  # residual blocks per level, in encoders and decoders
    global_scale: int = 4  # global pathway sees the whole image scaled down by this factor
    local_scales: tuple[float, ...] = (1.0, 0.5, 0.25)  # local pathways 1..n
    cue_channels: int = 8  # channels of the F_g / F_{i-1} cues handed to local encoders
    fusion_channels: int = 8  # width of the ResBlocks inside the Laplacian-pyramid fusion
    fusion_blocks: int = 2  # ResBlocks between concat(h_n, B_n) and the mask
    patch_size: int = 256  # local-pathway patch side at inference, in that pathway's pixels
    halo: int | None = None  # context around each patch; null: the receptive field
    # Ablation switches (the baselines of the pipeline issue).
    global_pathway: bool = True
    local_pathways: bool = True
    pac: bool = True
    pyramid: bool = True
    fullres_widths: tuple[int, ...] | None = None  # arch=fullres; null: match GLSGN (below)
    fullres_match: Literal["params", "macs"] = "params"  # parameter count or MACs per pixel

    def validate(self) -> None:
        p = "model"
        _require(1 <= len(self.widths) <= 6, f"{p}.widths", "1 to 6 levels", list(self.widths))
        for i, w in enumerate(self.widths):
            _require(1 <= w <= 4096, f"{p}.widths[{i}]", "an int in [1, 4096]", w)
        _require(0 <= self.blocks <= 64, f"{p}.blocks", "an int in [0, 64]", self.blocks)
        _require(
            _is_power_of_two(self.global_scale) and self.global_scale <= 64,
            f"{p}.global_scale",
            "a power of two in [1, 64]",
            self.global_scale,
        )
        s = self.local_scales
        _require(1 <= len(s) <= 6, f"{p}.local_scales", "1 to 6 scales", list(s))
        _require(s[0] == 1.0, f"{p}.local_scales[0]", "1.0 (the full-resolution pathway)", s[0])
        for i, v in enumerate(s):
            inv = 1.0 / v if v > 0 else 0.0
            ok = v > 0 and inv == round(inv) and _is_power_of_two(round(inv)) and inv <= 64
            _require(ok, f"{p}.local_scales[{i}]", "1/2^k with k in [0, 6]", v)
            if i:
                _require(v < s[i - 1], f"{p}.local_scales[{i}]", f"< {s[i - 1]} (decreasing)", v)
        for key in ("cue_channels", "fusion_channels"):
            v = getattr(self, key)
            _require(1 <= v <= 1024, f"{p}.{key}", "an int in [1, 1024]", v)
        _require(
            0 <= self.fusion_blocks <= 16,
            f"{p}.fusion_blocks",
            "an int in [0, 16]",
            self.fusion_blocks,
        )
        align = self.align
        _require(
            self.patch_size >= 2 * align and self.patch_size % align == 0,
            f"{p}.patch_size",
            f"a multiple of {align} and >= {2 * align} (for widths of {len(self.widths)} levels)",
            self.patch_size,
        )
        if self.halo is not None:
            _require(0 <= self.halo <= 4096, f"{p}.halo", "null or an int in [0, 4096]", self.halo)
        _require(
            self.global_pathway or self.local_pathways,
            f"{p}.global_pathway",
            "true when local_pathways is false (the network needs a pathway)",
            self.global_pathway,
        )
        if self.fullres_widths is not None:
            for i, w in enumerate(self.fullres_widths):
                _require(1 <= w <= 4096, f"{p}.fullres_widths[{i}]", "an int in [1, 4096]", w)
            _require(
                len(self.fullres_widths) == len(self.widths),
                f"{p}.fullres_widths",
                f"{len(self.widths)} levels like model.widths",
                list(self.fullres_widths),
            )

    @property
    def align(self) -> int:
        """Patch origins and sizes at every pathway's scale are multiples of this (stride 2)."""
        return max(2, 2 ** (len(self.widths) - 1))

    @property
    def variant(self) -> str:
        """The architecture these switches build, named as in `VARIANTS` ('full' when no block
        is switched off; several names joined by '+')."""
        matches = [
            name for name, v in VARIANTS.items()
            if v.model and all(getattr(self, k) == value for k, value in v.model.items())
        ]  # fmt: skip
        baseline = [n for n in matches if VARIANTS[n].group == "baseline"]
        return "+".join(baseline or matches) or "full"


@dataclass(frozen=True)
class RestoreConfig:
    """Defaults of `glsgn restore` (each is also a command-line flag; this is their one source)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast on cuda only
    # auto: on cuda the whole image or the largest patch that fits; on the cpu model.patch_size
    patch_size: int | Literal["auto"] = "auto"
    max_memory: str | None = None  # cuda: a cap on device memory, e.g. 2GB (null: free memory)

    def validate(self) -> None:
        if self.patch_size != "auto":
            _require(self.patch_size >= 2, "restore.patch_size", "auto or an int >= 2",
                     self.patch_size)  # fmt: skip
        if self.max_memory is not None:
            try:
                parse_memory(self.max_memory)
            except ValueError as e:
                raise ConfigError(f"restore.{e}") from None


def parse_memory(text: str | int | None) -> int | None:
    """'2GB', '1.5G', '512MB', '800M' or a number of bytes -> bytes (None stays None)."""
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        units = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "M": 2**20, "MB": 2**20, "G": 2**30,
                 "GB": 2**30, "T": 2**40, "TB": 2**40}  # fmt: skip
        t = str(text).strip().upper().replace("IB", "B")
        num = t.rstrip("KMGTB")
        try:
            value = float(num) * units[t[len(num) :]]
        except (KeyError, ValueError):
            raise ValueError(
                f"max_memory: expected a size like 2GB or 512MB, got {text!r}"
            ) from None
    if value <= 0:
        raise ValueError(f"max_memory: expected a positive size, got {text!r}")
    return int(value)


def _check_range(key: str, r: tuple, lo: float, hi: float) -> None:
    _require(
        lo <= r[0] <= r[1] <= hi, key, f"[low, high] with {lo} <= low <= high <= {hi}", list(r)
    )


@dataclass(frozen=True)
class ScenesConfig:
    """Procedural dead-leaves scenes: UHR detail down to the pixel, with an occlusion depth."""

    r_min: float = 1.5  # smallest leaf radius, pixels (at any resolution: detail to the pixel)
    r_max: float = 0.25  # largest leaf radius, as a fraction of the shorter side
    exponent: float = 3.0  # radius density ~ r^-exponent; 3 is scale invariant
    coverage: float = 3.0  # leaf area / canvas area; about e^-coverage stays background

    def validate(self) -> None:
        p = "data.scenes"
        _require(0.5 <= self.r_min <= 64, f"{p}.r_min", "a number in [0.5, 64]", self.r_min)
        _require(0 < self.r_max <= 1, f"{p}.r_max", "a fraction in (0, 1]", self.r_max)
        _require(1.5 <= self.exponent <= 5, f"{p}.exponent", "in [1.5, 5]", self.exponent)
        _require(0.5 <= self.coverage <= 10, f"{p}.coverage", "in [0.5, 10]", self.coverage)


@dataclass(frozen=True)
class ReflectionConfig:
    """Reflection synthesis after Zhang et al. 2018 / ERRNet; pixels at data.reference_size."""

    sigma: Range = (1.0, 5.0)  # Gaussian blur of the reflection layer
    strength: Range = (0.4, 1.0)  # scale of the reflection layer

    def validate(self) -> None:
        _check_range("data.reflection.sigma", self.sigma, 0.0, 100.0)
        _check_range("data.reflection.strength", self.strength, 0.0, 1.0)


@dataclass(frozen=True)
class RainConfig:
    """Rain streak layers, motion-blurred; pixels and densities at data.reference_size."""

    layers: tuple[int, int] = (2, 4)  # number of streak layers
    density: Range = (150.0, 600.0)  # streaks per megapixel of the reference-size image
    length: Range = (15.0, 45.0)  # streak length, pixels
    width: Range = (1.0, 2.5)  # streak width, pixels
    angle: Range = (-20.0, 20.0)  # degrees from vertical, clockwise
    jitter: float = 3.0  # angle spread between layers, degrees
    brightness: Range = (0.25, 0.6)

    def validate(self) -> None:
        p = "data.rain"
        _require(1 <= self.layers[0] <= self.layers[1] <= 16, f"{p}.layers",
                 "[low, high] with 1 <= low <= high <= 16", list(self.layers))  # fmt: skip
        _check_range(f"{p}.density", self.density, 0.0, 1e5)
        _check_range(f"{p}.length", self.length, 1.0, 1000.0)
        _check_range(f"{p}.width", self.width, 0.25, 50.0)
        _check_range(f"{p}.angle", self.angle, -80.0, 80.0)
        _require(0 <= self.jitter <= 45, f"{p}.jitter", "degrees in [0, 45]", self.jitter)
        _check_range(f"{p}.brightness", self.brightness, 0.0, 1.0)


@dataclass(frozen=True)
class HazeConfig:
    """Atmospheric scattering I = J t + A (1 - t), t = exp(-beta d), depth d in [0, 1]."""

    beta: Range = (0.8, 2.5)  # scattering coefficient
    airlight: Range = (0.7, 1.0)  # atmospheric light A
    tint: float = 0.05  # per-channel spread of A around grey

    def validate(self) -> None:
        _check_range("data.haze.beta", self.beta, 0.0, 10.0)
        _check_range("data.haze.airlight", self.airlight, 0.0, 1.0)
        _require(0 <= self.tint <= 0.5, "data.haze.tint", "a number in [0, 0.5]", self.tint)


@dataclass(frozen=True)
class SplitsConfig:
    """Number of image pairs per split (synthetic data)."""

    train: int = 8
    val: int = 2
    test: int = 2

    def validate(self) -> None:
        for k in ("train", "val", "test"):
            v = getattr(self, k)
            _require(1 <= v <= 100000, f"data.splits.{k}", "an int in [1, 100000]", v)


@dataclass(frozen=True)
class SourcesConfig:
    """Where each task's pairs come from: synthesised here, or a paired folder in data/raw."""

    reflection: Literal["synthetic", "paired"] = "synthetic"
    rain: Literal["synthetic", "paired"] = "synthetic"
    haze: Literal["synthetic", "paired"] = "synthetic"

    def validate(self) -> None:
        pass


@dataclass(frozen=True)
class DataConfig:
    """Dataset preparation (prepare@task stages)."""

    tasks: tuple[str, ...] = TASKS
    size: tuple[int, int] = (128, 224)  # H, W of synthetic pairs; paper profile: 2160, 3840
    reference_size: int = 1024  # long side at which synthesis pixel sizes are given
    splits: SplitsConfig = field(default_factory=SplitsConfig)
    scene_fraction: float = 0.5  # share of clean images that are dead-leaves scenes
    seed: int = 0
    source: SourcesConfig = field(default_factory=SourcesConfig)
    paired_input: str = "input"  # paired folders: data/raw/{task}/{split}/{paired_input}/*
    paired_target: str = "target"
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    reflection: ReflectionConfig = field(default_factory=ReflectionConfig)
    rain: RainConfig = field(default_factory=RainConfig)
    haze: HazeConfig = field(default_factory=HazeConfig)

    def validate(self) -> None:
        for i, t in enumerate(self.tasks):
            _require(t in TASKS, f"data.tasks[{i}]", f"one of {', '.join(TASKS)}", t)
        _require(len(set(self.tasks)) == len(self.tasks), "data.tasks", "no repeats",
                 list(self.tasks))  # fmt: skip
        for i, v in enumerate(self.size):
            _require(16 <= v <= 16384, f"data.size[{i}]", "an int in [16, 16384]", v)
        _require(16 <= self.reference_size <= 16384, "data.reference_size",
                 "an int in [16, 16384]", self.reference_size)  # fmt: skip
        _require(0 <= self.scene_fraction <= 1, "data.scene_fraction", "a fraction in [0, 1]",
                 self.scene_fraction)  # fmt: skip
        _require(0 <= self.seed < 2**32, "data.seed", "an int in [0, 2^32)", self.seed)
        for key in ("paired_input", "paired_target"):
            v = getattr(self, key)
            _require(bool(v) and ".." not in v, f"data.{key}", "a relative folder or glob", v)
        for sub in (self.splits, self.source, self.scenes, self.reflection, self.rain, self.haze):
            sub.validate()

    def scale(self, h: int, w: int) -> float:
        """Factor from reference-size pixels to pixels of an h x w image."""
        return max(h, w) / self.reference_size


@dataclass(frozen=True)
class Variant:
    """One row of the ablation table: what a variant changes, relative to `full`."""

    group: Literal["reference", "term", "block", "baseline"]
    what: str  # one line, for tables and logs
    model: dict = field(default_factory=dict)  # ModelConfig fields it sets
    loss: dict = field(default_factory=dict)  # LossConfig fields it sets


# The ablation table, read by training, evaluation, the figures, the benchmark and the tests.
# Each row changes one thing: a term-only row sets one weight to 0 and keeps every block; a
# block-only row removes one block and keeps every term that still applies; the baselines
# are single full-resolution networks of GLSGN's parameter count or of its MACs per pixel.
VARIANTS: dict[str, Variant] = {
    "full": Variant("reference", "GLSGN with every pathway, block and term"),
    "no_content": Variant("term", "low-level content term off", loss={"content": 0.0}),
    "no_attention": Variant("term", "perceptual attention term off", loss={"attention": 0.0}),
    "no_intensity": Variant("term", "restoring intensity term off", loss={"intensity": 0.0}),
    "no_semantic": Variant("term", "high-level semantic term off", loss={"semantic": 0.0}),
    "no_pac": Variant("block", "PAC blocks removed (no A_i: the attention term has nothing "
                      "to compare)", model={"pac": False}),
    "no_pyramid": Variant("block", "no Laplacian-pyramid fusion: B_out = B_1",
                          model={"pyramid": False}),
    "global_only": Variant("block", "the global pathway alone", model={"local_pathways": False}),
    "local_only": Variant("block", "the local pathways alone", model={"global_pathway": False}),
    "fullres": Variant("baseline", "one full-resolution U-Net of GLSGN's parameter count",
                       model={"arch": "fullres", "fullres_match": "params"}),
    "fullres_flops": Variant("baseline", "one full-resolution U-Net of GLSGN's MACs per pixel",
                             model={"arch": "fullres", "fullres_match": "macs"}),
}  # fmt: skip


def variant_configs(params: Params, variant: str) -> tuple[ModelConfig, LossConfig]:
    """The model and loss configs of `variant`: params.yaml's `model` and `loss`, changed as
    its row of `VARIANTS` says."""
    if variant not in VARIANTS:
        raise ConfigError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    v = VARIANTS[variant]
    return dataclasses.replace(params.model, **v.model), dataclasses.replace(params.loss, **v.loss)


@dataclass(frozen=True)
class RunSpec:
    """One training run of the pipeline: a task and a variant (full, an ablation, a baseline)."""

    task: Literal["reflection", "rain", "haze"] = "reflection"
    variant: str = "full"

    def validate(self, key: str) -> None:
        _require(self.variant in VARIANTS, f"{key}.variant", f"one of {', '.join(VARIANTS)}",
                 self.variant)  # fmt: skip


def _default_runs() -> dict[str, RunSpec]:
    runs = {f"reflection-{v}": RunSpec("reflection", v) for v in VARIANTS}
    runs.update({f"{t}-full": RunSpec(t, "full") for t in ("rain", "haze")})
    return runs


@dataclass(frozen=True)
class RunPaths:
    """Where the pipeline keeps one run trained at one seed, relative to the repository: the
    one definition train, evaluate and the notebooks' loaders share (dvc.yaml spells the same
    paths out)."""

    run: str
    seed: int

    def under(self, base: str | Path) -> Path:
        """BASE/RUN/seedS: this run's entry in one of the pipeline's folders."""
        return Path(base) / self.run / f"seed{self.seed}"

    @property
    def model(self) -> Path:
        return self.under("models").with_suffix(".pt")

    @property
    def checkpoint(self) -> Path:
        return self.under("checkpoints") / "last.pt"

    @property
    def live(self) -> Path:
        return self.under("dvclive")

    @property
    def metrics(self) -> Path:
        return self.under("metrics").with_suffix(".json")

    @property
    def per_image(self) -> Path:
        return self.under("metrics").with_suffix(".csv")

    @property
    def restored(self) -> Path:
        return self.under(Path("reports", "restored"))


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe (train@run stages)."""

    runs: dict[str, RunSpec] = field(default_factory=_default_runs)
    steps: int = 80
    batch_size: int = 2
    crop: int | None = None  # full-resolution crop side (a multiple of the model's
    # pad_multiple); null: the whole image, so training sees what inference sees
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 8  # linear warm-up steps, then cosine decay to lr_min
    lr_min: float = 1e-5
    clip: float = 1.0  # gradient-norm clipping
    workers: int | None = None  # DataLoader workers; null: one per spare core on cuda, 0 on cpu
    seeds: tuple[int, ...] = (0,)  # every run trains once per seed (train@RUN-SEED stages)
    checkpoint_every: int = 40  # steps between resumable checkpoints
    val_every: int = 40  # steps between validation PSNR measurements
    log_every: int = 5
    amp: Literal["none", "bf16", "fp16"] = "bf16"  # autocast on cuda only
    channels_last: bool = True  # on cuda only

    def validate(self) -> None:
        p = "train"
        _require(len(self.runs) >= 1, f"{p}.runs", "at least one run", self.runs)
        for name, run in self.runs.items():
            ok = bool(name) and all(c.isalnum() or c in "-_" for c in name)
            _require(ok, f"{p}.runs", "run names of letters, digits, '-' and '_'", name)
            run.validate(f"{p}.runs.{name}")
        for key, lo, hi in (
            ("steps", 1, 10**8), ("batch_size", 1, 4096), ("warmup", 0, 10**8),
            ("workers", 0, 256), ("checkpoint_every", 1, 10**8), ("val_every", 1, 10**8),
            ("log_every", 1, 10**8),
        ):  # fmt: skip
            v = getattr(self, key)
            if v is None and key == "workers":
                continue
            _require(lo <= v <= hi, f"{p}.{key}", f"an int in [{lo}, {hi}]", v)
        if self.crop is not None:
            _require(16 <= self.crop <= 16384, f"{p}.crop", "null or an int in [16, 16384]",
                     self.crop)  # fmt: skip
        _require(0 < self.lr <= 1, f"{p}.lr", "a number in (0, 1]", self.lr)
        _require(0 <= self.lr_min <= self.lr, f"{p}.lr_min", "in [0, train.lr]", self.lr_min)
        _require(0 <= self.weight_decay <= 1, f"{p}.weight_decay", "in [0, 1]", self.weight_decay)
        _require(self.clip > 0, f"{p}.clip", "a number > 0", self.clip)
        _require(len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds), f"{p}.seeds",
                 "a list of distinct seeds", list(self.seeds))  # fmt: skip
        for i, seed in enumerate(self.seeds):
            _require(0 <= seed < 2**32, f"{p}.seeds[{i}]", "an int in [0, 2^32)", seed)


@dataclass(frozen=True)
class LossConfig:
    """Reconstruction losses and the four consistency terms (docs/method.md, "Losses")."""

    reconstruction: float = 1.0  # L1 of B_out against the target
    pathway_global: float = 0.5  # L1 of B_g against the target at the global scale
    pathway_local: float = 0.5  # L1 of what each B_i gives the pyramid (B_1, B_2: their bands)
    content: float = 0.1  # low-level content consistency
    attention: float = 0.05  # perceptual attention consistency
    intensity: float = 0.1  # restoring intensity consistency
    semantic: float = 0.05  # high-level semantic consistency (frozen timm backbone)
    backbone: str = "resnet18"  # timm model name
    backbone_layers: tuple[int, ...] = (1, 2)  # timm feature stages (out_indices)
    backbone_weights: str | None = None  # a local weights file, "hub" (timm's cache/download)
    allow_random_backbone: bool = True  # with no weights: random init, recorded in metrics

    def validate(self) -> None:
        for key in ("reconstruction", "pathway_global", "pathway_local", "content", "attention",
                    "intensity", "semantic"):  # fmt: skip
            v = getattr(self, key)
            _require(0 <= v <= 1000, f"loss.{key}", "a weight in [0, 1000]", v)
        _require(len(self.backbone_layers) >= 1 and all(0 <= i <= 8 for i in self.backbone_layers),
                 "loss.backbone_layers", "a list of feature stages in [0, 8]",
                 list(self.backbone_layers))  # fmt: skip


@dataclass(frozen=True)
class EvaluateConfig:
    """Full-resolution evaluation (evaluate@run stages)."""

    keep_images: int = 2  # restored test images kept for the figures
    lpips_backbone: str | None = None  # AlexNet weights file when torch's hub cache has none
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def validate(self) -> None:
        _require(0 <= self.keep_images <= 10000, "evaluate.keep_images", "an int >= 0",
                 self.keep_images)  # fmt: skip


BENCHMARK_SIZES = {"1K": (540, 960), "2K": (1080, 1920), "4K": (2160, 3840), "8K": (4320, 7680)}


def benchmark_size(name: str) -> tuple[int, int]:
    """(H, W) of a benchmark size: a name of `BENCHMARK_SIZES` or "WIDTHxHEIGHT"."""
    if name in BENCHMARK_SIZES:
        return BENCHMARK_SIZES[name]
    w, _, h = name.partition("x")
    if not (w.isdigit() and h.isdigit() and 1 <= int(w) <= 65536 and 1 <= int(h) <= 65536):
        raise ConfigError(f"benchmark size {name!r}: expected one of "
                          f"{', '.join(BENCHMARK_SIZES)} or WIDTHxHEIGHT")  # fmt: skip
    return int(h), int(w)


@dataclass(frozen=True)
class BenchmarkConfig:
    """The benchmark stage: inference time and peak memory per resolution (efficiency figure)."""

    sizes: tuple[str, ...] = ("1K", "2K")  # names of BENCHMARK_SIZES or "WIDTHxHEIGHT"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"

    def validate(self) -> None:
        _require(len(self.sizes) >= 1, "benchmark.sizes", "at least one size", list(self.sizes))
        for i, name in enumerate(self.sizes):
            try:
                benchmark_size(name)
            except ConfigError as e:
                raise ConfigError(f"benchmark.sizes[{i}]: {e}") from None


@dataclass(frozen=True)
class Params:
    """The whole params.yaml."""

    model: ModelConfig = field(default_factory=ModelConfig)
    restore: RestoreConfig = field(default_factory=RestoreConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)

    def validate(self) -> None:
        self.model.validate()
        self.restore.validate()
        self.data.validate()
        self.train.validate()
        self.loss.validate()
        self.evaluate.validate()
        self.benchmark.validate()
        for name, run in self.train.runs.items():
            _require(run.task in self.data.tasks, f"train.runs.{name}.task",
                     f"a task of data.tasks ({', '.join(self.data.tasks)})", run.task)  # fmt: skip


# --- typed construction from plain data ------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        item = {int: "integers", float: "numbers"}.get(args[0], _type_name(args[0]))
        return f"a list of {item}" if args[-1] is Ellipsis else f"a list of {len(args)} {item}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp) or origin is dict:
        return "a mapping"
    return {int: "an int", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against type hint `tp`; return it in canonical form (lists become tuples)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kt, vt = typing.get_args(tp)
        return {
            _coerce(k, kt, f"{key} (key {k!r})"): _coerce(v, vt, f"{key}.{k}")
            for k, v in value.items()
        }
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp) and isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        fixed = args[-1] is not Ellipsis
        if not isinstance(value, (list, tuple)) or (fixed and len(value) != len(args)):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        items = args if fixed else [args[0]] * len(value)
        return tuple(
            _coerce(v, t, f"{key}[{i}]") for i, (t, v) in enumerate(zip(items, value, strict=True))
        )
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def _build(cls: type, data: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for k in data:
        if k not in names:
            where = f"{prefix}.{k}" if prefix else str(k)
            raise ConfigError(f"{where}: unknown key (expected one of: {', '.join(names)})")
    kwargs = {}
    for name in names:
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], f"{prefix}.{name}" if prefix else name)
    return cls(**kwargs)


def from_dict(cls: type, data: dict | None, prefix: str = "") -> Any:
    """Build and validate dataclass `cls` from a plain mapping (YAML or a checkpoint)."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    obj = _build(cls, data or {}, prefix)
    obj.validate()
    return obj


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read params.yaml into `Params`; errors name the file and the key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return from_dict(Params, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
