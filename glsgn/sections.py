"""Typed sections, the building blocks of params.yaml's schema, and the one formatter of their
errors.

A section is a frozen pydantic dataclass: its field types state each key's type and range, its
`_check` the rules between keys (`require`). However it is built (from params.yaml, from a
checkpoint's plain dict, by `dataclasses.replace` or in code), anything wrong is one
`ConfigError` naming the key path (``model.widths[1]``), pydantic's message and the value.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable
from dataclasses import field
from typing import Annotated, Any, TypeVar

import pydantic
from pydantic import Field, Strict
from typing_extensions import dataclass_transform

__all__ = ["ConfigError", "section", "require", "ordered", "from_dict", "Range"]

_T = TypeVar("_T")

# Strict scalars: YAML's `true` is no int, "3" no int and no number; an int is a number
# (`lr: 1`), stored as a float. Lists (YAML, checkpoints) are accepted for tuples.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]


def Range(lo: float, hi: float, item: Any = Float) -> Any:
    """[low, high] with lo <= low, high <= hi (low <= high: `ordered`)."""
    bound = Annotated[item, Field(ge=lo, le=hi)]
    return tuple[bound, bound]


class ConfigError(ValueError):
    """A parameter is unknown, of the wrong type or out of range; the message names the key."""


def require(ok: bool, key: str, expected: str, value: Any) -> None:
    """A rule the field types cannot state, in a `_check`. Its error is the one convention
    `_message` reads: ValueError("KEY: MESSAGE"), KEY relative to the section checking it
    (``local_scales[1]``, ``runs.x.task``) and MESSAGE naming the value."""
    if not ok:
        raise ValueError(f"{key}: expected {expected} (got {value!r})")


def ordered(cfg: _T) -> _T:
    """Each [low, high] pair of a section has low <= high."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, tuple):
            require(v[0] <= v[1], f.name, "[low, high] with low <= high", list(v))
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
    an unknown key's lists the section's keys; a `_check` rule's is its own (`require`)."""
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
        if kind == "value_error":  # "KEY: MESSAGE" from `require`
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
def section(key: str) -> Callable[[type[_T]], type[_T]]:
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


def from_dict(cls: type[_T], data: dict | None, prefix: str = "") -> _T:
    """Build and validate section `cls` from a plain mapping (YAML or a checkpoint)."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping (got {data!r})")
    try:
        return pydantic.TypeAdapter(cls).validate_python(data or {})
    except pydantic.ValidationError as e:
        raise ConfigError(_message(e, cls, prefix, data or {})) from None
