"""params.yaml schema: typed, validated configuration, read in one place.

Every section is a frozen pydantic dataclass. Its field types state each key's type and range,
its `_check` the rules between keys. A section is validated however it is built (from
params.yaml, from a checkpoint's plain dict, by `dataclasses.replace` or in code); anything
wrong is a `ConfigError` that names the key (``model.widths[1]``) and the value.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import pydantic
import yaml
from pydantic import Field, Strict, model_validator
from typing_extensions import dataclass_transform

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
    "section",
    "Range",
    "ordered",
    "Params",
    "Precision",
    "Device",
    "autocast_dtype",
    "parse_memory",
    "load_params",
    "from_dict",
]

_T = TypeVar("_T")

# Strict scalars: YAML's `true` is no int, "3" no int and no number; an int is a number
# (`lr: 1`), stored as a float. Lists (YAML, checkpoints) are accepted for tuples.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
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


def Range(lo: float, hi: float, item: Any = Float) -> Any:
    """[low, high] with lo <= low, high <= hi (low <= high: `_ordered`)."""
    bound = Annotated[item, Field(ge=lo, le=hi)]
    return tuple[bound, bound]


def autocast_dtype(precision: Precision) -> torch.dtype | None:
    """torch.autocast's dtype for a precision; None for fp32 (no autocast)."""
    import torch  # here: reading params.yaml needs no torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class ConfigError(ValueError):
    """A parameter is unknown, of the wrong type or out of range; the message names the key."""


def _known(names: Any) -> str:
    return f"one of {', '.join(names)}"


def _require(ok: bool, key: str, expected: str, value: Any) -> None:
    """A rule the field types cannot state, in a `_check`. Its error is the one convention
    `_message` reads: ValueError("KEY: MESSAGE"), KEY relative to the section checking it
    (``local_scales[1]``, ``runs.x.task``) and MESSAGE naming the value."""
    if not ok:
        raise ValueError(f"{key}: expected {expected} (got {value!r})")


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _ordered(cfg: _T) -> _T:
    """Each [low, high] pair of a section has low <= high."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, tuple):
            _require(v[0] <= v[1], f.name, "[low, high] with low <= high", list(v))
    return cfg


# --- pydantic's errors, as messages that name the key -----------------------------------------


def _keys(cls: Any, loc: tuple) -> str:
    """The keys of the section holding `loc`'s last key, section `cls` at loc ()."""
    items = iter(loc[:-1])
    for item in items:
        tp = cls.__pydantic_fields__[item].annotation
        if typing.get_origin(tp) is dict:
            next(items, None)  # a key of the mapping, whose values are one section
        found = [tp]
        for t in found:  # the section in X, X | None, dict[K, X]
            found += typing.get_args(t)
        cls = next(t for t in found if isinstance(t, type) and dataclasses.is_dataclass(t))
    return ", ".join(cls.__pydantic_fields__)


def _message(error: pydantic.ValidationError, cls: type, prefix: str, data: Any) -> str:
    """Each error of `error` as "KEY.PATH: MESSAGE (got VALUE)", on one line, "; "-joined.

    KEY.PATH is the error's loc under `prefix`, read along the input `data`: a mapping's key
    as ``.key``, a list's index as ``[i]``; the rest of loc names a union's member (whose
    errors are joined by "or") or a mapping's key of the wrong type. MESSAGE is pydantic's;
    an unknown key's lists the section's keys; a `_check` rule's is its own (`_require`)."""
    errors, found = error.errors(), {}
    for e in errors:
        loc, kind = e["loc"], e["type"]
        if kind == "too_short" and any(f["loc"][: len(loc)] == loc != f["loc"] for f in errors):
            continue  # a list too short once its bad items are dropped: those are named
        key, value = prefix, data
        for item in loc:
            if isinstance(value, (list, tuple)) and isinstance(item, int):
                key, value = f"{key}[{item}]", value[item] if item < len(value) else None
            elif isinstance(value, dict) and item != "[key]":
                key, value = f"{key}.{item}" if key else str(item), value.get(item)
            else:
                break
        msg, got = e["msg"], f" (got {e['input']!r})"
        if kind == "value_error":  # "KEY: MESSAGE" from `_require`
            rel, _, msg = str(e["ctx"]["error"]).partition(": ")
            key, got = f"{key}.{rel}" if key else rel, ""
        elif kind in ("unexpected_keyword_argument", "extra_forbidden"):
            msg = f"unknown key, expected one of {_keys(cls, loc)}"
        elif kind == "missing":
            got = ""
        msgs = found.setdefault(key, ([], got))[0]
        if msg not in msgs:
            msgs.append(msg)
    return "; ".join(f"{key}: {' or '.join(msgs)}{got}" for key, (msgs, got) in found.items())


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
def _section(key: str) -> Callable[[type[_T]], type[_T]]:
    """A frozen pydantic dataclass for the section at `key`. Built in code too (`dataclasses.
    replace`, `ModelConfig(...)`) its errors are `ConfigError`s naming the key, on one line."""

    def make(cls: type[_T]) -> type[_T]:
        config = pydantic.ConfigDict(extra="forbid")
        cls = pydantic.dataclasses.dataclass(frozen=True, config=config)(cls)
        validate = cls.__init__
        names = [f.name for f in dataclasses.fields(cls)]

        @functools.wraps(validate)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if len(args) <= len(names) and not kwargs.keys() & set(names[: len(args)]):
                kwargs = {**dict(zip(names, args, strict=False)), **kwargs}  # errors name keys
                args = ()
            try:
                validate(self, *args, **kwargs)
            except pydantic.ValidationError as e:
                raise ConfigError(_message(e, cls, key, kwargs)) from None

        cls.__init__ = __init__  # type: ignore[method-assign]
        return cls

    return make


# --- the sections ------------------------------------------------------------------------------


@_section("model")
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
        _require(
            _is_power_of_two(self.global_scale),
            "global_scale",
            "a power of two in [1, 64]",
            self.global_scale,
        )
        s = self.local_scales
        _require(s[0] == 1.0, "local_scales[0]", "1.0 (the full-resolution pathway)", s[0])
        for i, v in enumerate(s):
            inv = 1.0 / v if v > 0 else 0.0
            ok = v > 0 and inv == round(inv) and _is_power_of_two(round(inv)) and inv <= 64
            _require(ok, f"local_scales[{i}]", "1/2^k with k in [0, 6]", v)
            if i:
                _require(v < s[i - 1], f"local_scales[{i}]", f"< {s[i - 1]} (decreasing)", v)
        a = self.align
        _require(
            self.patch_size >= 2 * a and self.patch_size % a == 0,
            "patch_size",
            f"a multiple of {a} and >= {2 * a} (for widths of {len(self.widths)} levels)",
            self.patch_size,
        )
        _require(
            self.global_pathway or self.local_pathways,
            "global_pathway",
            "true when local_pathways is false (the network needs a pathway)",
            self.global_pathway,
        )
        if self.fullres_widths is not None:
            n, w = len(self.widths), list(self.fullres_widths)
            _require(len(w) == n, "fullres_widths", f"{n} levels like model.widths", w)
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


@_section("restore")
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


@_section("data.scenes")
class ScenesConfig:
    """Procedural dead-leaves scenes: UHR detail down to the pixel, with an occlusion depth."""

    # smallest leaf radius, pixels (at any resolution: detail to the pixel)
    r_min: Annotated[Float, Field(ge=0.5, le=64)] = 1.5
    # largest leaf radius, as a fraction of the shorter side
    r_max: Annotated[Float, Field(gt=0, le=1)] = 0.25
    # radius density ~ r^-exponent; 3 is scale invariant
    exponent: Annotated[Float, Field(ge=1.5, le=5)] = 3.0
    # leaf area / canvas area; about e^-coverage stays background
    coverage: Annotated[Float, Field(ge=0.5, le=10)] = 3.0


@_section("data.splits")
class SplitsConfig:
    """Number of image pairs per split (synthetic data)."""

    train: Annotated[Int, Field(ge=1, le=100000)] = 8
    val: Annotated[Int, Field(ge=1, le=100000)] = 2
    test: Annotated[Int, Field(ge=1, le=100000)] = 2


Folder = Annotated[Str, Field(min_length=1)]


@_section("data.tasks.TASK.paired.splits")
class SplitFoldersConfig:
    """Each split's folder under the dataset's root ("." the root itself); null for val or
    test: drawn from train (`PairedConfig.val_fraction`, `test_fraction`)."""

    train: Folder = "train"
    val: Folder | None = "val"
    test: Folder | None = "test"


@_section("data.tasks.TASK.paired")
class PairedConfig:
    """A paired dataset as it ships: data/raw/ROOT/SPLIT/{INPUT,TARGET} (README "Real paired
    data" has one recipe per dataset)."""

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
                _require(ok, key, "a path relative to data/raw, without '..'", v)
        for key in ("input_stem", "target_stem"):
            v = getattr(self, key)
            _require(v.count("{id}") == 1, key, "a stem pattern with one {id}", v)
        _require(
            (self.match == "listing") == (self.listing is not None),
            "listing",
            "a JSON file name with match: listing, and null otherwise",
            self.listing,
        )
        return self


Name = Annotated[Str, Field(pattern=r"^[A-Za-z0-9_]+$")]  # a task, term or variant: no '-'


@_section("data.tasks.TASK")
class TaskConfig:
    """A task: a degradation synthesised over the clean images, or a paired dataset."""

    # a name of glsgn/data/synthesis.py's DEGRADATIONS; null: the task's own name
    degradation: Name | None = None
    paired: PairedConfig | None = None  # a dataset in data/raw instead (README "Your own data")

    @model_validator(mode="after")
    def _check(self) -> TaskConfig:
        both = self.degradation is not None and self.paired is not None
        _require(not both, "paired", "null with a degradation (a task is one or the other)", "..")
        return self


def _default_tasks() -> dict[str, TaskConfig]:
    return {t: TaskConfig() for t in ("reflection", "rain", "haze")}


@_section("data")
class DataConfig:
    """Dataset preparation (prepare@task stages)."""

    # name: {} synthesises the degradation of that name, {degradation: NAME} another,
    # {paired: {...}} reads a dataset in data/raw
    tasks: Annotated[dict[Name, TaskConfig], Field(min_length=1)] = field(
        default_factory=_default_tasks
    )
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
            _require(name in DEGRADATIONS, f"degradations.{name}", _known(DEGRADATIONS), name)
        for task in self.tasks:
            name = self.task(task).degradation
            if name is not None:
                _require(
                    name in DEGRADATIONS, f"tasks.{task}.degradation", _known(DEGRADATIONS), name
                )
                self.degradation(name)  # its errors name data.degradations.NAME
        return self

    def task(self, name: str) -> TaskConfig:
        """`data.tasks.NAME`, its degradation named (the task's own name when not given)."""
        t = self.tasks[name]
        if t.paired is None and t.degradation is None:
            return TaskConfig(degradation=name)
        return t

    def degradation(self, name: str) -> Any:
        """The settings of degradation `name`: data.degradations.NAME over its defaults."""
        from .data.synthesis import DEGRADATIONS

        settings = DEGRADATIONS[name].settings
        if settings is None:
            return None
        return from_dict(settings, self.degradations.get(name), f"data.degradations.{name}")

    def scale(self, h: int, w: int) -> float:
        """Factor from reference-size pixels to pixels of an h x w image."""
        return max(h, w) / self.reference_size


@_section("train")
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
    # every run trains once per seed (train@RUN-SEED stages)
    seeds: Annotated[tuple[Seed, ...], Field(min_length=1)] = (0,)
    checkpoint_every: Steps = 40  # steps between resumable checkpoints
    val_every: Steps = 40  # steps between validation PSNR measurements
    # steps between test-set PSNR/SSIM measurements, the learning curve (null: none); they
    # choose nothing, so the test set stays held out
    curve_every: Steps | None = None
    log_every: Steps = 5
    # autocast: on cuda as set; on a cpu bf16 only where it runs bf16 in hardware (else fp32)
    precision: Precision = "fp32"
    channels_last: Bool = True

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        from .variants import BLOCKS  # the block and baseline rows of the ablation table

        for i, v in enumerate(self.variants):
            _require(v in BLOCKS, f"variants[{i}]", _known(BLOCKS), v)
        _require(self.lr_min <= self.lr, "lr_min", "in [0, train.lr]", self.lr_min)
        _require(
            len(set(self.seeds)) == len(self.seeds),
            "seeds",
            "a list of distinct seeds",
            list(self.seeds),
        )
        return self


@_section("loss")
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


@_section("figures")
class FiguresConfig:
    """What the attention and qualitative figures show."""

    # a GLSGN run with the global pathway, PAC and the pyramid; null: the first task's full
    run: Str | None = None


@_section("evaluate")
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
    # how far one run's metric moves on another CPU (README "Reproducibility",
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


@_section("benchmark")
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


@_section("")
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
                _require(task in self.data.tasks, f"train.{key}[{i}]", tasks, task)
        figure = runs(self).get(self.figure_run)
        ok = figure is not None and figure.variant not in BLOCKS
        _require(ok, "figures.run", "a run of GLSGN with every block", self.figure_run)
        return self

    @property
    def figure_run(self) -> str:
        """The run the attention and qualitative figures show (figures.run)."""
        return self.figures.run or f"{next(iter(self.data.tasks))}-full"


def from_dict(cls: type[_T], data: dict | None, prefix: str = "") -> _T:
    """Build and validate section `cls` from a plain mapping (YAML or a checkpoint)."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping (got {data!r})")
    try:
        return pydantic.TypeAdapter(cls).validate_python(data or {})
    except pydantic.ValidationError as e:
        raise ConfigError(_message(e, cls, prefix, data or {})) from None


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
        raise ConfigError(
            f"{path}: expected a mapping at the top level (got a {type(data).__name__})"
        )
    try:
        return from_dict(Params, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


# For sections declared beside the code they configure (a degradation's settings).
section, ordered = _section, _ordered
