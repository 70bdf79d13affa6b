"""The ablation table and the runs it makes: what each variant changes, and which runs train.

A variant is `full` (GLSGN with every pathway, block and term), `no_TERM` for each consistency
term registered in glsgn/losses.py (derived: a new term gets its ablation without an edit
here), a block variant (one block removed, every term that still applies kept) or a baseline
(one full-resolution network of GLSGN's parameter count or of its MACs per pixel).

A run is TASK-VARIANT: `full` on every task of data.tasks, the block and baseline variants of
train.variants on each task of train.variant_tasks, and `no_TERM` of every term of
loss.consistency on each task of train.term_tasks. dvc.yaml's train, train-variant and
train-term stages iterate the same three lists, so the two always agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from .config import ConfigError, LossConfig, ModelConfig, Params

__all__ = ["Variant", "BLOCKS", "RunSpec", "variants", "variant_configs", "runs", "architecture"]


@dataclass(frozen=True)
class Variant:
    """One row of the ablation table: what a variant changes, relative to `full`."""

    group: Literal["reference", "term", "block", "baseline"]
    what: str  # one line, for tables and logs
    model: dict = field(default_factory=dict)  # ModelConfig fields it sets
    loss: dict = field(default_factory=dict)  # LossConfig fields it sets


# The block and baseline rows. Each changes one thing: a block row removes one block and keeps
# every term that still applies; the baselines are single full-resolution networks.
BLOCKS: dict[str, Variant] = {
    "no_pac": Variant(
        "block",
        "PAC blocks removed (no A_i: the attention term has nothing to compare)",
        model={"pac": False},
    ),
    "no_pyramid": Variant(
        "block", "no Laplacian-pyramid fusion: B_out = B_1", model={"pyramid": False}
    ),
    "global_only": Variant("block", "the global pathway alone", model={"local_pathways": False}),
    "local_only": Variant("block", "the local pathways alone", model={"global_pathway": False}),
    "fullres": Variant(
        "baseline",
        "one full-resolution U-Net of GLSGN's parameter count",
        model={"arch": "fullres", "fullres_match": "params"},
    ),
    "fullres_flops": Variant(
        "baseline",
        "one full-resolution U-Net of GLSGN's MACs per pixel",
        model={"arch": "fullres", "fullres_match": "macs"},
    ),
}


def variants() -> dict[str, Variant]:
    """Every variant in table order: full, no_TERM per registered consistency term, blocks,
    baselines. Read when asked, so a term registered after import is in it."""
    from .losses import CONSISTENCY  # torch: only when a variant is looked up

    rows = {"full": Variant("reference", "GLSGN with every pathway, block and term")}
    for name, term in CONSISTENCY.items():
        rows[f"no_{name}"] = Variant("term", term.what, loss={"consistency": {name: 0.0}})
    return rows | BLOCKS


def variant_configs(params: Params, variant: str) -> tuple[ModelConfig, LossConfig]:
    """The model and loss configs of `variant`: params.yaml's `model` and `loss`, changed as
    its row of the ablation table says."""
    table = variants()
    if variant not in table:
        raise ConfigError(f"variant: unknown {variant!r} (known: {', '.join(table)})")
    v = table[variant]
    loss = params.loss
    if "consistency" in v.loss:
        loss = dataclasses.replace(loss, consistency={**loss.consistency, **v.loss["consistency"]})
    return dataclasses.replace(params.model, **v.model), loss


def architecture(cfg: ModelConfig) -> str:
    """The block or baseline variant these model switches build ('full' when none is off;
    several names joined by '+')."""
    matches = [
        n for n, v in BLOCKS.items() if all(getattr(cfg, k) == x for k, x in v.model.items())
    ]
    baseline = [n for n in matches if BLOCKS[n].group == "baseline"]
    return "+".join(baseline or matches) or "full"


@dataclass(frozen=True)
class RunSpec:
    """One training run of the pipeline: a task and a variant."""

    task: str
    variant: str


def runs(params: Params) -> dict[str, RunSpec]:
    """Every run the pipeline trains, by name (TASK-VARIANT), in table order per task."""
    t = params.train
    out = {f"{task}-full": RunSpec(task, "full") for task in params.data.tasks}
    for task in t.variant_tasks:
        out |= {f"{task}-{v}": RunSpec(task, v) for v in t.variants}
    for task in t.term_tasks:
        out |= {
            f"{task}-no_{term}": RunSpec(task, f"no_{term}") for term in params.loss.consistency
        }
    return out
