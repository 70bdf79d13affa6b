"""glsgn.runs: a run's one definition is the one dvc.yaml's train@RUN-SEED and evaluate@RUN-SEED
stages use (paths, configs), and a run or seed params.yaml does not list is a clear error."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
import torch
import yaml

from glsgn.config import ConfigError, Params, from_dict, load_params
from glsgn.runs import Run, RunError, RunPaths, start

ROOT = Path(__file__).resolve().parents[1]


def _declared(stage: dict, key: str, name: str, seed: int) -> set[Path]:
    """A matrix stage's `key` entries (outs, metrics, ...) for one run and seed."""
    entries = [e if isinstance(e, str) else next(iter(e)) for e in stage.get(key, [])]
    return {
        Path(e.replace("${item.run}", name).replace("${item.seed}", str(seed))) for e in entries
    }


def test_run_paths_are_the_pipeline_stages_outputs():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    train, evaluate = stages["train"], stages["evaluate"]
    for stage in (train, evaluate):  # one stage per run of train.runs and seed of train.seeds
        assert stage["matrix"] == {"run": "${train.runs}", "seed": "${train.seeds}"}
    params = load_params(ROOT / "params.yaml")
    for name in params.train.runs:
        for seed in params.train.seeds:
            p = Run.of(params, name, seed).paths
            assert _declared(train, "outs", name, seed) == {p.model, p.checkpoint.parent}
            assert _declared(train, "metrics", name, seed) == {p.live / "metrics.json"}
            assert _declared(train, "plots", name, seed) == {p.live / "plots" / "metrics"}
            assert p.model in _declared(evaluate, "deps", name, seed)
            assert _declared(evaluate, "metrics", name, seed) == {p.metrics}
            assert _declared(evaluate, "outs", name, seed) == {p.per_image, p.restored}


def test_run_configs_come_from_the_params_its_stages_declare():
    """train@RUN-SEED declares `model`, `loss` and `train.runs.RUN`: a run's configs are those
    sections changed as its variant's row says, whatever else params.yaml holds."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert {"model", "loss", "train.runs.${item.run}"} <= set(stages["train"]["params"])
    assert "train.runs.${item.run}" in stages["evaluate"]["params"]
    sections = {"model": {"widths": [8, 16, 32], "patch_size": 64}, "loss": {"content": 0.3}}
    runs = {
        "rain-no_pac": {"task": "rain", "variant": "no_pac"},
        "rain-no_content": {"task": "rain", "variant": "no_content"},
    }
    params = from_dict(Params, {**sections, "train": {"runs": runs, "seeds": [0, 5]}})
    other = from_dict(
        Params,
        {
            **sections,
            "train": {"runs": {"rain-no_pac": runs["rain-no_pac"]}, "seeds": [5], "steps": 3},
            "evaluate": {"keep_images": 0},
        },
    )
    run = Run.of(params, "rain-no_pac", 5)
    assert run == Run.of(other, "rain-no_pac", 5)
    assert (run.name, run.seed, run.spec.task, run.spec.variant) == (
        "rain-no_pac",
        5,
        "rain",
        "no_pac",
    )
    assert run.model_cfg.pac is False and run.model_cfg.widths == (8, 16, 32)
    assert run.loss_cfg == params.loss
    no_content = Run.of(params, "rain-no_content")  # the first seed by default
    assert no_content.seed == 0 and no_content.paths == RunPaths("rain-no_content", 0)
    assert no_content.model_cfg == params.model
    assert no_content.loss_cfg.content == 0.0
    assert no_content.loss_cfg.intensity == params.loss.intensity
    assert run.split("test") == Path("data/prepared/rain/test")


def test_unknown_run_or_seed_is_an_error_naming_it_and_the_choices():
    params = from_dict(
        Params, {"train": {"runs": {"haze-full": {"task": "haze"}}, "seeds": [0, 2]}}
    )
    with pytest.raises(RunError, match=r"run 'haze-nope' is not in train.runs \(haze-full\)"):
        Run.of(params, "haze-nope")
    with pytest.raises(RunError, match=r"seed 1 of run 'haze-full' is not in train.seeds \(0, 2\)"):
        Run.of(params, "haze-full", 1)
    # a ConfigError: the stage commands report it in one line, as any bad parameter
    assert issubclass(RunError, ConfigError)


def test_stage_commands_name_an_unknown_run(tmp_path, capsys):
    from glsgn.cli import main

    (tmp_path / "params.yaml").write_text("{}\n")
    for command in ("train", "evaluate"):
        argv = [command, "nope-full", "--params", str(tmp_path / "params.yaml"), "--quiet"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "run 'nope-full' is not in train.runs (" in err[0], err


def test_paths_in_other_folders_keep_the_pipeline_names():
    p = RunPaths("haze-full", 3, metrics_dir="evidence/metrics", models_dir=Path("/m"))
    assert p.metrics == Path("evidence/metrics/haze-full/seed3.json")
    assert p.per_image == Path("evidence/metrics/haze-full/seed3.csv")
    assert p.model == Path("/m/haze-full/seed3.pt")
    assert p.restored == Path("reports/restored/haze-full/seed3")
    assert p.checkpoint == Path("checkpoints/haze-full/seed3/last.pt")
    params = from_dict(Params, {"train": {"runs": {"haze-full": {"task": "haze"}}, "seeds": [3]}})
    assert Run.of(params, "haze-full", dvclive_dir="x").paths.live == Path("x/haze-full/seed3")


def test_start_seeds_torch_and_says_what_runs_where(caplog):
    params = from_dict(
        Params,
        {
            "train": {
                "runs": {"haze-fullres": {"task": "haze", "variant": "fullres"}},
                "seeds": [11],
            }
        },
    )
    run = Run.of(params, "haze-fullres")
    torch.manual_seed(11)
    expected = torch.rand(4)
    torch.manual_seed(0)
    with caplog.at_level(logging.INFO, logger="glsgn.runs"):
        start(run, "evaluate", torch.device("cpu"))
    assert torch.equal(torch.rand(4), expected)
    assert "evaluate haze-fullres seed 11 on cpu: task haze, variant fullres" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="glsgn.runs"):
        start(run, "train", torch.device("cpu"), rank=1)  # torchrun: rank 0 says it
    assert caplog.text == ""


def test_evaluation_does_not_import_training():
    """evaluate@RUN-SEED does not rerun when only training changes."""
    tree = ast.parse((ROOT / "glsgn/evaluate.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "train" not in imported and "runs" in imported
