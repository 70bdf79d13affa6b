"""The GLSGN network (framework.png, LP.png) and its full-resolution baseline."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from .fullres import FullResNet
from .glsgn import GLSGN, Geometry, GLSGNOutput

__all__ = ["GLSGN", "FullResNet", "GLSGNOutput", "Geometry", "build_model"]


def build_model(cfg: ModelConfig) -> nn.Module:
    """The network `cfg.arch` names: GLSGN (with its ablation switches) or the fullres baseline."""
    return {"glsgn": GLSGN, "fullres": FullResNet}[cfg.arch](cfg)
