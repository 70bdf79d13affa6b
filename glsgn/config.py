"""params.yaml schema: typed, validated configuration, read in one place.

Every section is a glsgn.sections section (a frozen pydantic dataclass): its field types state
each key's type and range, its `_check` the rules between keys; anything wrong is a
`ConfigError` naming the key path, pydantic's message and the value.
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import Field, model_validator

from .sections import Bool, ConfigError, Float, Int, Str, from_dict, require, section

if TYPE_CHECKING:
    import torch

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
    "TaskConfig",
    "PairedConfig",
    "FiguresConfig",
    "Params",
    "Precision",
    "Device",
    "autocast_dtype",
    "parse_memory",
    "load_params",
    "load_restore",
    "from_dict",
]

Width = Annotated[Int, Field(ge=1, le=4096)]
Levels = Annotated[tuple[Width, ...], Field(min_length=1, max_length=6)]
Scales = Annotated[tuple[Float, ...], Field(min_length=1, max_length=6)]
Side = Annotated[Int, Field(ge=16, le=16384)]
Seed = Annotated[Int, Field(ge=0, lt=2**32)]
Steps = Annotated[Int, Field(ge=1, le=10**8)]
Weight = Annotated[Float, Field(ge=0, le=1000)]
Stages = Annotated[tuple[Annotated[Int, Field(ge=0, le=8)], ...], Field(min_length=1)]
Precision = Literal["fp32", "bf16", "fp16"]  # autocast; fp32: none
# cuda:N too, as `glsgn restore --device` takes it
Device = Literal["auto", "cpu", "cuda"] | Annotated[Str, Field(pattern=r"^cuda:\d+$")]


def autocast_dtype(precision: Precision) -> torch.dtype | None:
    """torch.autocast's dtype for a precision; None for fp32 (no autocast)."""
    import torch  # here: reading params.yaml needs no torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _known(names: Any) -> str:
    return f"one of {', '.join(names)}"


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


# --- the sections ------------------------------------------------------------------------------


@section("model")
class ModelConfig:
    """Every size of the network (framework.png, LP.png). Defaults are the embedded CPU profile."""

    arch: Literal["glsgn", "fullres"] = "glsgn"
    widths: Levels = (16, 32, 64)  # channels per U-Net level, shared by all pathways
    # residual blocks per level, in encoders and decoders
    blocks: Annotated[Int, Field(ge=0, le=64)] = 1
    # global pathway sees the whole image scaled down by this factor
    global_scale: Annotated[Int, Field(ge=1, le=64)] = 4
    local_scales: Scales = (1.0, 0.5, 0.25)  # local pathways 1..n
    # channels of the F_g / F_{i-1} cues handed to local encoders
    cue_channels: Annotated[Int, Field(ge=1, le=1024)] = 8
    # width of the ResBlocks inside the Laplacian-pyramid fusion
    fusion_channels: Annotated[Int, Field(ge=1, le=1024)] = 8
    fusion_blocks: Annotated[Int, Field(ge=0, le=16)] = 2  # between concat(h_n, B_n) and the mask
    patch_size: Int = 256  # local-pathway patch side at inference, in that pathway's pixels
    # Ablation switches (the baselines of the pipeline issue).
    global_pathway: Bool = True
    local_pathways: Bool = True
    pac: Bool = True
    pyramid: Bool = True
    fullres_widths: Levels | None = None  # arch=fullres; null: match GLSGN (below)
    fullres_match: Literal["params", "macs"] = "params"  # parameter count or MACs per pixel

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        require(
            _is_power_of_two(self.global_scale),
            "global_scale",
            "a power of two in [1, 64]",
            self.global_scale,
        )
        s = self.local_scales
        require(s[0] == 1.0, "local_scales[0]", "1.0 (the full-resolution pathway)", s[0])
        for i, v in enumerate(s):
            inv = 1.0 / v if v > 0 else 0.0
            ok = v > 0 and inv == round(inv) and _is_power_of_two(round(inv)) and inv <= 64
            require(ok, f"local_scales[{i}]", "1/2^k with k in [0, 6]", v)
            if i:
                require(v < s[i - 1], f"local_scales[{i}]", f"< {s[i - 1]} (decreasing)", v)
        a = self.align
        require(
            self.patch_size >= 2 * a and self.patch_size % a == 0,
            "patch_size",
            f"a multiple of {a} and >= {2 * a} (for widths of {len(self.widths)} levels)",
            self.patch_size,
        )
        require(
            self.global_pathway or self.local_pathways,
            "global_pathway",
            "true when local_pathways is false (the network needs a pathway)",
            self.global_pathway,
        )
        if self.fullres_widths is not None:
            n, w = len(self.widths), list(self.fullres_widths)
            require(len(w) == n, "fullres_widths", f"{n} levels like model.widths", w)
        return self

    @property
    def align(self) -> int:
        """Patch origins and sizes at every pathway's scale are multiples of this (stride 2)."""
        return max(2, 2 ** (len(self.widths) - 1))


def parse_memory(text: str | int | None) -> int | None:
    """'2GB', '1.5G', '512MB', '800M' or a number of bytes -> bytes (None stays None)."""
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        units = {
            "": 1,
            "B": 1,
            "K": 2**10,
            "KB": 2**10,
            "M": 2**20,
            "MB": 2**20,
            "G": 2**30,
            "GB": 2**30,
            "T": 2**40,
            "TB": 2**40,
        }
        t = str(text).strip().upper().replace("IB", "B")
        num = t.rstrip("KMGTB")
        try:
            value = float(num) * units[t[len(num) :]]
        except (KeyError, ValueError):
            raise ValueError(
                f"max_memory: expected a size like 2GB or 512MB (got {text!r})"
            ) from None
    if value <= 0:
        raise ValueError(f"max_memory: expected a positive size (got {text!r})")
    return int(value)


@section("restore")
class RestoreConfig:
    """Defaults of `glsgn restore` (each is also a command-line flag; this is their one source)."""

    device: Device = "auto"
    precision: Precision = "fp32"  # autocast on cuda only
    # auto: on cuda the whole image or the largest patch that fits; on the cpu model.patch_size
    patch_size: Literal["auto"] | Annotated[Int, Field(ge=2)] = "auto"
    max_memory: Str | None = None  # cuda: a cap on device memory, e.g. 2GB (null: free memory)

    @model_validator(mode="after")
    def _check(self) -> RestoreConfig:
        parse_memory(self.max_memory)  # its errors name max_memory
        return self


@section("data.scenes")
class ScenesConfig:
    """Procedural dead-leaves scenes: UHR detail down to the pixel, with an occlusion depth."""

    r_min: Annotated[Float, Field(ge=0.5, le=64)] = 1.5  # smallest leaf radius, pixels
    r_max: Annotated[Float, Field(gt=0, le=1)] = 0.25  # largest, a fraction of the short side
    exponent: Annotated[Float, Field(ge=1.5, le=5)] = 3.0  # density ~ r^-exponent; 3: scale-free
    coverage: Annotated[Float, Field(ge=0.5, le=10)] = 3.0  # leaf area / canvas area


@section("data.splits")
class SplitsConfig:
    """Number of image pairs per split (synthetic data)."""

    train: Annotated[Int, Field(ge=1, le=100000)] = 8
    val: Annotated[Int, Field(ge=1, le=100000)] = 2
    test: Annotated[Int, Field(ge=1, le=100000)] = 2


Folder = Annotated[Str, Field(min_length=1)]


@section("data.tasks.TASK.paired.splits")
class SplitFoldersConfig:
    """Each split's folder under the dataset's root ("." the root itself); null for val or
    test: drawn from train (`PairedConfig.val_fraction`, `test_fraction`)."""

    train: Folder = "train"
    val: Folder | None = "val"
    test: Folder | None = "test"


@section("data.tasks.TASK.paired")
class PairedConfig:
    """A paired dataset as it ships: data/raw/ROOT/SPLIT/{INPUT,TARGET} (docs/datasets.md has
    one recipe per dataset)."""

    root: Folder | None = None  # under data/raw; null: the task's name
    splits: SplitFoldersConfig = field(default_factory=SplitFoldersConfig)
    input: Folder = "input"  # under each split folder: a folder, or a glob of files
    target: Folder = "target"
    # how an input finds its target: stem (stems equal once `input_stem` / `target_stem`
    # are matched), sorted (the i-th of each folder; only where names say nothing), listing
    # (a JSON list of entries naming both files)
    match: Literal["stem", "sorted", "listing"] = "stem"
    # match stem: each file's stem, {id} the part the two share and * anything
    # ("{id}_hazy", "{id}_*"); both "{id}": equal stems
    input_stem: Str = "{id}"
    target_stem: Str = "{id}"
    # match listing: the JSON file under each split folder, {split} its folder's name
    # (UHDRR4K: "4k_{split}_results_list.json"), and the keys of an entry naming the input
    # and the target file (in the input and target folders)
    listing: Folder | None = None
    listing_keys: tuple[Folder, Folder] = ("input", "target")
    # share of train's pairs drawn (data.seed) into val / test when their folder is null
    val_fraction: Annotated[Float, Field(gt=0, le=0.5)] = 0.1
    test_fraction: Annotated[Float, Field(gt=0, le=0.5)] = 0.2

    @model_validator(mode="after")
    def _check(self) -> PairedConfig:
        paths = [("root", self.root), ("input", self.input), ("target", self.target)]
        paths += [("listing", self.listing)]
        paths += [(f"splits.{k}", getattr(self.splits, k)) for k in ("train", "val", "test")]
        for key, v in paths:
            if v is not None:
                ok = not Path(v).is_absolute() and ".." not in Path(v).parts
                require(ok, key, "a path relative to data/raw, without '..'", v)
        for key in ("input_stem", "target_stem"):
            v = getattr(self, key)
            require(v.count("{id}") == 1, key, "a stem pattern with one {id}", v)
        require(
            (self.match == "listing") == (self.listing is not None),
            "listing",
            "a JSON file name with match: listing, and null otherwise",
            self.listing,
        )
        return self


Name = Annotated[Str, Field(pattern=r"^[A-Za-z0-9_]+$")]  # a task, term or variant: no '-'


@section("data.tasks.TASK")
class TaskConfig:
    """A task: a degradation synthesised over the clean images, or a paired dataset."""

    # a name of glsgn/data/synthesis.py's DEGRADATIONS; null: the task's own name
    degradation: Name | None = None
    paired: PairedConfig | None = None  # a dataset in data/raw (docs/datasets.md)

    @model_validator(mode="after")
    def _check(self) -> TaskConfig:
        both = self.degradation is not None and self.paired is not None
        require(not both, "degradation", "null with paired (one or the other)", self.degradation)
        return self


@section("data")
class DataConfig:
    """Dataset preparation (prepare@task stages)."""

    # name: {} synthesises the degradation of that name, {degradation: NAME} another,
    # {paired: {...}} reads a dataset in data/raw
    tasks: Annotated[dict[Name, TaskConfig], Field(min_length=1)] = field(
        default_factory=lambda: {t: TaskConfig() for t in ("reflection", "rain", "haze")}
    )
    raw: Str = "data/raw"  # clean photographs, or datasets of pairs; relative to params.yaml
    size: tuple[Side, Side] = (128, 224)  # H, W of synthetic pairs; paper profile: 2160, 3840
    reference_size: Side = 1024  # long side at which synthesis pixel sizes are given
    splits: SplitsConfig = field(default_factory=SplitsConfig)
    # share of clean images that are dead-leaves scenes
    scene_fraction: Annotated[Float, Field(ge=0, le=1)] = 0.5
    seed: Seed = 0
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    # each degradation's settings (its section in glsgn/data/synthesis.py); defaults there
    degradations: dict[Name, dict[Str, Any]] = field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        from .data.synthesis import DEGRADATIONS  # numpy and OpenCV: only when validating

        for name in self.degradations:
            require(name in DEGRADATIONS, f"degradations.{name}", _known(DEGRADATIONS), name)
        for task in self.tasks:
            name = self.task(task).degradation
            if name is not None:
                key = f"tasks.{task}.degradation"
                require(name in DEGRADATIONS, key, _known(DEGRADATIONS), name)
                self.degradation(name, prefix="")  # a ValueError naming the key, as `require`
        return self

    def task(self, name: str) -> TaskConfig:
        """`data.tasks.NAME`, its degradation named (the task's own name when not given)."""
        t = self.tasks[name]
        if t.paired is None and t.degradation is None:
            return TaskConfig(degradation=name)
        return t

    def degradation(self, name: str, prefix: str = "data.") -> Any:
        """The settings of degradation `name`: data.degradations.NAME over its defaults."""
        from .data.synthesis import DEGRADATIONS

        settings = DEGRADATIONS[name].settings
        if settings is None:
            return None
        key = f"{prefix}degradations.{name}"
        try:
            return from_dict(settings, self.degradations.get(name), key)
        except ConfigError as e:
            raise (ValueError(str(e)) if not prefix else e) from None

    def scale(self, h: int, w: int) -> float:
        """Factor from reference-size pixels to pixels of an h x w image."""
        return max(h, w) / self.reference_size


@section("train")
class TrainConfig:
    """The training recipe (train@run stages)."""

    # Which runs train (glsgn/variants.py): TASK-full on every task; each block or baseline
    # variant of `variants` on each of `variant_tasks`; no_TERM of every loss.consistency term
    # on each of `term_tasks` (train, train-variant, train-term stages of dvc.yaml)
    variants: tuple[Name, ...] = (
        "no_pac",
        "no_pyramid",
        "global_only",
        "local_only",
        "fullres",
        "fullres_flops",
    )
    variant_tasks: tuple[Name, ...] = ()  # none by default: params.yaml names reflection
    term_tasks: tuple[Name, ...] = ()
    # processes per run: >1 launches torchrun (DDP: one per GPU, or gloo on a CPU)
    nproc: Annotated[Int, Field(ge=1, le=1024)] = 1
    steps: Steps = 80
    batch_size: Annotated[Int, Field(ge=1, le=4096)] = 2
    # full-resolution crop side (a multiple of the model's pad_multiple); null: the whole
    # image, so training sees what inference sees
    crop: Side | None = None
    lr: Annotated[Float, Field(gt=0, le=1)] = 2e-3
    weight_decay: Annotated[Float, Field(ge=0, le=1)] = 1e-4
    warmup: Annotated[Int, Field(ge=0, le=10**8)] = 8  # linear warm-up steps, then cosine decay
    lr_min: Annotated[Float, Field(ge=0)] = 1e-5  # to lr_min (at most lr)
    clip: Annotated[Float, Field(gt=0)] = 1.0  # gradient-norm clipping
    # decay of an exponential moving average of the weights (0: none); validation and the
    # released model use the average. Warmed up: min(ema, (1 + step) / (10 + step))
    ema: Annotated[Float, Field(ge=0, lt=1)] = 0.0
    # DataLoader workers; null: one per spare core on cuda, 0 on cpu
    workers: Annotated[Int, Field(ge=0, le=256)] | None = None
    cache: Bool = True  # decode training pairs once into data/cache (about 25 MB per 4K image)
    seeds: Annotated[tuple[Seed, ...], Field(min_length=1)] = (0,)
    checkpoint_every: Steps = 40  # steps between resumable checkpoints
    val_every: Steps | None = 40  # steps between validation PSNR measurements (null: none)
    # steps between test-set PSNR/SSIM measurements, the learning curve (null: none); they
    # choose nothing, so the test set stays held out
    curve_every: Steps | None = None
    # validation and the curve restore only the first N pairs of their splits (null: all):
    # each whole image costs a full-resolution restore (about 9 s at 4K on 2 CPU cores)
    monitor_images: Annotated[Int, Field(ge=1)] | None = None
    log_every: Steps = 5
    # autocast: on cuda as set; on a cpu bf16 only where it runs bf16 in hardware (else fp32)
    precision: Precision = "fp32"
    channels_last: Bool = True

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        from .variants import BLOCKS  # the block and baseline rows of the ablation table

        for i, v in enumerate(self.variants):
            require(v in BLOCKS, f"variants[{i}]", _known(BLOCKS), v)
        require(self.lr_min <= self.lr, "lr_min", "in [0, train.lr]", self.lr_min)
        require(
            len(set(self.seeds)) == len(self.seeds),
            "seeds",
            "a list of distinct seeds",
            list(self.seeds),
        )
        return self


@section("loss")
class LossConfig:
    """Reconstruction losses and the four consistency terms (docs/method.md, "Losses")."""

    reconstruction: Weight = 1.0  # L1 of B_out against the target
    pathway_global: Weight = 0.5  # L1 of B_g against the target at the global scale
    pathway_local: Weight = 0.5  # L1 of what each B_i gives the pyramid (B_1, B_2: their bands)
    # each consistency term of glsgn/losses.py (CONSISTENCY) by name: its weight (0: off);
    # defaults there. Every term listed also trains its no_TERM ablation (train.term_tasks)
    consistency: dict[Name, Weight] = field(default_factory=lambda: _consistency_defaults())
    backbone: Str = "resnet18"  # timm model name (the semantic term)
    backbone_layers: Stages = (1, 2)  # timm feature stages (out_indices)
    backbone_weights: Str | None = None  # a local weights file, "hub" (timm's cache/download)
    allow_random_backbone: Bool = True  # with no weights: random init, recorded in metrics


def _consistency_defaults() -> dict[str, float]:
    # The names are checked where the terms run (GLSGNLoss): reading params.yaml, as every
    # stage does, imports no torch model code.
    from .losses import CONSISTENCY

    return {name: term.weight for name, term in CONSISTENCY.items()}


@section("figures")
class FiguresConfig:
    """What the attention and qualitative figures show."""

    # a GLSGN run with the global pathway, PAC and the pyramid; null: the first task's full
    run: Str | None = None


@section("evaluate")
class EvaluateConfig:
    """Full-resolution evaluation (evaluate@run stages)."""

    # restored test images kept for the figures
    keep_images: Annotated[Int, Field(ge=0, le=10000)] = 2
    lpips_backbone: Str | None = None  # AlexNet weights file when torch's hub cache has none
    device: Device = "auto"
    # the BasicSR family's convention (psnr_y, ssim_y): pixels cut from each border
    crop_border: Annotated[Int, Field(ge=0, le=64)] = 4
    # which convention the ablation statistics use: rgb (psnr, ssim: floats in [0, 1]) or
    # y (psnr_y, ssim_y: 8-bit luma, border cropped); evaluation writes both
    metric: Literal["rgb", "y"] = "rgb"
    # how far one run's metric moves on another CPU (docs/results.md, "Reproducibility";
    # scripts/platform_spread.py); an ablation effect must exceed it to hold
    platform_spread: dict[
        Literal["psnr", "ssim", "psnr_y", "ssim_y"], Annotated[Float, Field(ge=0)]
    ] = field(default_factory=dict)


BENCHMARK_SIZES = {"1K": (540, 960), "2K": (1080, 1920), "4K": (2160, 3840), "8K": (4320, 7680)}


def benchmark_size(name: str) -> tuple[int, int]:
    """(H, W) of a benchmark size: a name of `BENCHMARK_SIZES` or "WIDTHxHEIGHT"."""
    if name in BENCHMARK_SIZES:
        return BENCHMARK_SIZES[name]
    w, _, h = name.partition("x")
    if not (w.isdigit() and h.isdigit() and 1 <= int(w) <= 65536 and 1 <= int(h) <= 65536):
        raise ConfigError(
            f"benchmark size {name!r}: expected one of {', '.join(BENCHMARK_SIZES)} or WIDTHxHEIGHT"
        )
    return int(h), int(w)


@section("benchmark")
class BenchmarkConfig:
    """The benchmark stage: inference time and peak memory per resolution (efficiency figure)."""

    # names of BENCHMARK_SIZES or "WIDTHxHEIGHT"
    sizes: Annotated[tuple[Str, ...], Field(min_length=1)] = ("1K", "2K")
    device: Device = "auto"
    precision: Precision = "fp32"

    @model_validator(mode="after")
    def _check(self) -> BenchmarkConfig:
        for i, name in enumerate(self.sizes):
            try:
                benchmark_size(name)
            except ConfigError as e:
                raise ValueError(f"sizes[{i}]: {e}") from None
        return self


@section("")
class Params:
    """The whole params.yaml."""

    model: ModelConfig = field(default_factory=ModelConfig)
    restore: RestoreConfig = field(default_factory=RestoreConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    figures: FiguresConfig = field(default_factory=FiguresConfig)

    @model_validator(mode="after")
    def _check(self) -> Params:
        from .variants import BLOCKS, runs

        tasks = f"a task of data.tasks ({', '.join(self.data.tasks)})"
        for key in ("variant_tasks", "term_tasks"):
            for i, task in enumerate(getattr(self.train, key)):
                require(task in self.data.tasks, f"train.{key}[{i}]", tasks, task)
        figure = runs(self).get(self.figure_run)
        ok = figure is not None and figure.variant not in BLOCKS
        require(ok, "figures.run", "a run of GLSGN with every block", self.figure_run)
        return self

    @property
    def figure_run(self) -> str:
        """The run the attention and qualitative figures show (figures.run)."""
        return self.figures.run or f"{next(iter(self.data.tasks))}-full"


def _read(path: Path) -> dict | None:
    """params.yaml's top-level mapping; errors name the file."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping at the top level (got a {type(data).__name__})"
        )
    return data


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read params.yaml into `Params`; errors name the file and the key."""
    path = Path(path)
    data = _read(path)
    try:
        return from_dict(Params, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def load_restore(path: str | Path = "params.yaml") -> RestoreConfig:
    """The `restore:` section of a params file alone (its defaults when the section is absent):
    `glsgn restore` run inside another project reads nothing else of that project's file."""
    path = Path(path)
    data = _read(path) or {}
    try:
        return from_dict(RestoreConfig, data.get("restore"), "restore")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
