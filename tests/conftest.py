"""Shared fixtures: a tiny model config so every test runs in seconds on a 2-core CPU."""

from __future__ import annotations

import os

# Before torch loads: on a 2-core machine shared with other work, OpenMP's default two threads
# spin-wait on each other (test_model.py: 108 s against 4.8 s with one). Set it to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from glsgn.checkpoint import save_checkpoint
from glsgn.config import ModelConfig, Params
from glsgn.model import build_model
from glsgn.variants import BLOCKS, variant_configs

TINY = ModelConfig(
    widths=(4, 8, 16), blocks=1, cue_channels=4, fusion_channels=4, fusion_blocks=1, patch_size=32
)


def build(cfg: ModelConfig, seed: int = 0) -> nn.Module:
    """`build_model(cfg)` with every weight moved off its initialisation, as training would.

    Freshly built, every pathway and the fusion are the identity (zero-initialised heads), so
    a test of seams, radii or gradients on such a model would pass whatever the code did.
    """
    model = build_model(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


# Every architecture of the ablation table (the term-only rows share `full`'s).
VARIANTS = {name: variant_configs(Params(model=TINY), name)[0] for name in ("full", *BLOCKS)}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture
def tiny_cfg() -> ModelConfig:
    return TINY


@pytest.fixture(scope="session")
def identity_ckpt(tmp_path_factory):
    """A checkpoint whose model restores every image to itself (its heads start at zero)."""
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(TINY, pyramid=False))  # heads start at 0
    path = tmp_path_factory.mktemp("ckpt") / "identity.pt"
    save_checkpoint(path, model)
    return path


@pytest.fixture(scope="session")
def random_ckpt(tmp_path_factory):
    """A checkpoint whose model changes every image (weights off the identity)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "random.pt"
    save_checkpoint(path, build(TINY))  # weights off the identity initialisation
    return path


def pipeline_stages() -> dict[str, dict]:
    """dvc.yaml's stages as DVC resolves them: {name: {cmd, deps, outs, metrics, plots}}."""
    from dvc.repo import Repo

    def paths(entries) -> set[Path]:
        return {Path(e.def_path) for e in entries}

    with Repo(str(Path(__file__).resolve().parents[1])) as repo:
        return {
            s.addressing: {
                "cmd": s.cmd,
                "deps": paths(s.deps),
                "outs": paths(o for o in s.outs if not (o.metric or o.plot)),
                "metrics": paths(o for o in s.outs if o.metric),
                "plots": paths(o for o in s.outs if o.plot),
            }
            for s in repo.index.stages
            if s.cmd
        }
