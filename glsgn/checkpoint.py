"""Checkpoints: weights, the model config that built them and versions, in one file.

Written atomically (temporary file, then rename) and read with ``torch.load(weights_only=True)``,
so loading a checkpoint never runs code from it.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .atomic import atomic_write
from .config import ConfigError, ModelConfig, from_dict
from .model import build_model

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "config_dict",
    "config_diffs",
    "FORMAT",
]

FORMAT = "glsgn-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt or does not fit; the message names the file."""


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return [_plain(x) for x in v] if isinstance(v, (tuple, list)) else v


def config_dict(cfg: Any, skip: tuple[str, ...] = ()) -> dict:
    """A config dataclass as plain data (lists, not tuples), as checkpoints store it."""
    return {k: _plain(v) for k, v in dataclasses.asdict(cfg).items() if k not in skip}


def config_diffs(
    saved: dict, now: dict, ignore: tuple[str, ...] = (), labels: tuple[str, str] = ("saved", "now")
) -> list[str]:
    """'key: saved X, now Y' for every key whose value differs: the one comparison behind
    resuming a training state and loading a checkpoint for a given config."""
    keys = [k for k in dict.fromkeys([*saved, *now]) if k not in ignore]
    return [
        f"{k}: {labels[0]} {_plain(saved.get(k))!r}, {labels[1]} {_plain(now.get(k))!r}"
        for k in keys
        if _plain(saved.get(k)) != _plain(now.get(k))
    ]


def save_checkpoint(path: str | os.PathLike, model: nn.Module, extra: dict | None = None) -> None:
    """Save `model` (built from `model.cfg`) and `extra` (plain data, tensors) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": config_dict(model.cfg),
        "state_dict": model.state_dict(),
        "versions": {
            "glsgn": __version__,
            "torch": str(torch.__version__),
            "python": platform.python_version(),
        },
        "extra": extra or {},
    }
    with atomic_write(path) as f:
        torch.save(payload, f)


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    expect: ModelConfig | None = None,
) -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint was saved from; returns (model, payload without weights).

    With `expect`, a checkpoint whose architecture differs is an error naming the keys
    (`patch_size` only changes how inference streams, so it may differ).
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder, not a checkpoint file (a .pt file in models/)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [""]
        reason = next((ln for ln in lines if ln.startswith("WeightsUnpickler")), lines[0])
        raise CheckpointError(
            f"{path}: not a readable checkpoint (corrupt, truncated, or holding objects that "
            f"weights_only loading refuses): {type(e).__name__}: {reason}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a glsgn checkpoint (no '{FORMAT}' header)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('format_version')!r}, "
            f"this glsgn reads version {FORMAT_VERSION}"
        )
    stored = payload.get("model_config")
    if isinstance(stored, dict):  # model.halo, read by nothing, is gone; older files have it
        stored = {k: v for k, v in stored.items() if k != "halo"}
    try:
        cfg = from_dict(ModelConfig, stored, "model")
    except ConfigError as e:
        raise CheckpointError(f"{path}: stored model config is not valid here: {e}") from None
    diffs = []
    if expect is not None:  # patch_size only changes how inference streams
        diffs = config_diffs(
            config_dict(cfg), config_dict(expect), ("patch_size",), ("checkpoint", "expected")
        )
    if diffs:
        raise CheckpointError(f"{path}: model config differs: " + "; ".join(diffs))
    model = build_model(cfg)
    state = payload.get("state_dict")
    misfit = _misfit(model, state)
    if misfit:
        raise CheckpointError(f"{path}: weights do not fit the stored model config: {misfit}")
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError) as e:  # what _misfit does not foresee, still one line
        reason = " ".join(str(e).split())[:300]
        msg = f"{path}: weights do not fit the stored model config: {reason}"
        raise CheckpointError(msg) from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values (first: {bad[0]}); "
            "the training run that wrote it diverged"
        )
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, meta


def _misfit(model: nn.Module, state: object) -> str:
    """What keeps `state` from loading into `model`, in one line ('' when it fits): how many
    tensors are missing, unexpected or of another shape, with the first of each."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return "no state_dict of tensors"
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [
        f"{k} {list(state[k].shape)} in the file, {list(v.shape)} by its config"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    parts = [
        f"{len(items)} {what} (first: {items[0]})"
        for what, items in (
            ("tensor(s) of another shape", shapes),
            ("missing", missing),
            ("unexpected", extra),
        )
        if items
    ]
    return "; ".join(parts)
