"""Shared fixtures: a tiny model config so every test runs in seconds on a 2-core CPU."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from glsgn.config import ModelConfig

TINY = ModelConfig(
    widths=(4, 8, 16), blocks=1, cue_channels=4, fusion_channels=4, fusion_blocks=1, patch_size=32
)

# Every architecture the ablation switches build, by name.
VARIANTS = {
    "full": TINY,
    "no_pac": dataclasses.replace(TINY, pac=False),
    "no_pyramid": dataclasses.replace(TINY, pyramid=False),
    "local_only": dataclasses.replace(TINY, global_pathway=False),
    "global_only": dataclasses.replace(TINY, local_pathways=False),
    "fullres": dataclasses.replace(TINY, arch="fullres"),
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture
def tiny_cfg() -> ModelConfig:
    return TINY
