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

__all__ = ["ConfigError", "ModelConfig", "RestoreConfig", "Params", "load_params", "from_dict"]


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
    fullres_widths: tuple[int, ...] | None = None  # arch=fullres; null: match GLSGN's size

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
        """Short name of the architecture these switches build."""
        if self.arch == "fullres":
            return "fullres"
        if not self.local_pathways:
            return "global_only"
        if not self.global_pathway:
            return "local_only"
        parts = [n for n, on in (("no_pac", self.pac), ("no_pyramid", self.pyramid)) if not on]
        return "+".join(parts) or "full"


@dataclass(frozen=True)
class RestoreConfig:
    """Defaults of `glsgn restore` (each is also a command-line flag)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast on cuda only

    def validate(self) -> None:
        pass


@dataclass(frozen=True)
class Params:
    """The whole params.yaml."""

    model: ModelConfig = field(default_factory=ModelConfig)
    restore: RestoreConfig = field(default_factory=RestoreConfig)

    def validate(self) -> None:
        self.model.validate()
        self.restore.validate()


# --- typed construction from plain data ------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        item = typing.get_args(tp)[0]
        return "a list of " + {int: "integers", float: "numbers"}.get(item, _type_name(item))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
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
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        item = typing.get_args(tp)[0]
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
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
