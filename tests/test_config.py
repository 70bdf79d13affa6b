from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path

import pytest
import yaml

from glsgn.config import (
    ConfigError,
    ModelConfig,
    Params,
    RestoreConfig,
    RunSpec,
    TrainConfig,
    from_dict,
    load_params,
)

ROOT = Path(__file__).resolve().parents[1]


def test_committed_params_load_and_match_the_defaults():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params)
    assert p.model == ModelConfig()  # params.yaml states every default explicitly
    assert p.model.variant == "full"


def _load(tmp_path, text):
    f = tmp_path / "params.yaml"
    f.write_text(text)
    return load_params(f)


@pytest.mark.parametrize(
    "text, key, expected, value",
    [
        ("model: {widht: [4]}", "model.widht", "unknown key (expected one of: arch, ", None),
        ("modle: {}", "modle", "unknown key", None),
        ("train: {runs: {x: {varaint: full}}}", "train.runs.x.varaint", "unknown key", None),
        ("model: {blocks: two}", "model.blocks", "expected an int", "'two'"),
        ("model: {blocks: 1.5}", "model.blocks", "expected an int", "1.5"),
        ("model: {blocks: true}", "model.blocks", "expected an int in [0, 64]", "True"),
        ("model: {blocks: '3'}", "model.blocks", "expected an int", "'3'"),
        ("model: {pac: 1}", "model.pac", "expected true or false", "1"),
        ("train: {lr: '1e-3'}", "train.lr", "expected a number in (0, 1]", "'1e-3'"),
        ("train: {lr: true}", "train.lr", "expected a number", "True"),
        ("model: {widths: 16}", "model.widths", "expected a list of 1 to 6 integers", "16"),
        ("model: {widths: [16, x]}", "model.widths[1]", "expected an int", "'x'"),
        ("model: {widths: [16, 0]}", "model.widths[1]", "in [1, 4096]", "0"),
        ("model: {widths: [16, 5000]}", "model.widths[1]", "expected an int in [1, 4096]", "5000"),
        ("model: {global_scale: 3}", "model.global_scale", "power of two", "3"),
        ("model: {local_scales: [1.0, 0.5, 0.5]}", "model.local_scales[2]", "decreasing", "0.5"),
        ("model: {local_scales: [0.5]}", "model.local_scales[0]", "1.0", "0.5"),
        ("model: {local_scales: [1.0, 0.3]}", "model.local_scales[1]", "1/2^k", "0.3"),
        ("model: {patch_size: 30}", "model.patch_size", "multiple of 4", "30"),
        ("train: {crop: -1}", "train.crop", "null or an int", "-1"),
        ("model: {arch: unet}", "model.arch", "one of 'glsgn', 'fullres'", "'unet'"),
        (
            "model: {global_pathway: false, local_pathways: false}",
            "model.global_pathway",
            "true",
            "False",
        ),
        ("model: {fullres_widths: [8]}", "model.fullres_widths", "3 levels", "[8]"),
        ("restore: {precision: fp8}", "restore.precision", "one of", "'fp8'"),
        ("train: {precision: none}", "train.precision", "one of 'fp32', 'bf16', 'fp16'", "'none'"),
        ("restore: {patch_size: 1}", "restore.patch_size", "'auto' or an int >= 2", "1"),
        ("model: []", "model", "expected a mapping", "[]"),
        (
            "benchmark: {sizes: [16K]}",
            "benchmark.sizes[0]",
            "1K, 2K, 4K, 8K or WIDTHxHEIGHT",
            "'16K'",
        ),
        ("benchmark: {sizes: [1K, 960x0]}", "benchmark.sizes[1]", "WIDTHxHEIGHT", "'960x0'"),
        ("benchmark: {sizes: []}", "benchmark.sizes", "expected a non-empty list", "[]"),
        ("benchmark: {device: tpu}", "benchmark.device", "one of", "'tpu'"),
        ("data: {rain: {layers: [4, 2]}}", "data.rain.layers", "low <= high", "[4, 2]"),
        ("train: {lr: 0.001, lr_min: 0.01}", "train.lr_min", "in [0, train.lr]", "0.01"),
        ("train: {runs: {x: {variant: nope}}}", "train.runs.x.variant", "one of full", "'nope'"),
        (
            "data: {tasks: [haze]}",
            "train.runs.reflection-full.task",
            "a task of data.tasks",
            "'reflection'",
        ),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, key, expected, value):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    msg = str(e.value)
    assert f"{key}:" in msg and expected in msg, msg
    assert value is None or value in msg, msg
    assert str(tmp_path / "params.yaml") in msg


def test_file_level_errors(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        _load(tmp_path, "model: [unclosed")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        _load(tmp_path, "- 1\n- 2\n")


def test_benchmark_sizes_by_name_or_width_x_height():
    from glsgn.config import benchmark_size

    assert benchmark_size("4K") == (2160, 3840) and benchmark_size("96x64") == (64, 96)
    assert from_dict(Params, {"benchmark": {"sizes": ["8K", "100x50"]}}).benchmark.sizes == (
        "8K",
        "100x50",
    )


def test_lists_become_tuples_and_ints_are_accepted_as_floats():
    cfg = from_dict(ModelConfig, {"widths": [8, 16], "local_scales": [1, 0.5]}, "model")
    assert cfg.widths == (8, 16) and cfg.local_scales == (1.0, 0.5)
    assert isinstance(cfg.local_scales[0], float)


def test_strict_types_bools_and_strings_are_not_numbers():
    with pytest.raises(ConfigError, match=r"model.blocks: expected an int in \[0, 64\], got True"):
        from_dict(ModelConfig, {"blocks": True}, "model")
    with pytest.raises(ConfigError, match=r"model.widths\[0\]: expected an int .*, got '8'"):
        from_dict(ModelConfig, {"widths": ["8", 16]}, "model")
    with pytest.raises(ConfigError, match=r"train.lr: expected a number in \(0, 1\], got '0.1'"):
        from_dict(Params, {"train": {"lr": "0.1"}})
    with pytest.raises(ConfigError, match="train.channels_last: expected true or false, got 'yes'"):
        from_dict(Params, {"train": {"channels_last": "yes"}})
    lr = from_dict(Params, {"train": {"lr": 1, "lr_min": 0}}).train
    assert lr.lr == 1.0 and isinstance(lr.lr, float) and isinstance(lr.lr_min, float)


def test_every_error_is_reported_with_its_key_and_value():
    with pytest.raises(ConfigError) as e:
        from_dict(Params, {"model": {"blocks": -1, "foo": 1}, "data": {"size": [8, 64]}})
    msg = str(e.value)
    assert "model.blocks: expected an int in [0, 64], got -1" in msg
    assert "model.foo: unknown key (expected one of: arch, widths, blocks," in msg
    assert "data.size[0]: expected an int in [16, 16384], got 8" in msg
    assert "\n" not in msg


def test_sections_validate_however_they_are_built():
    """In code, by dataclasses.replace and from a checkpoint's plain dict alike."""
    cfg = ModelConfig()
    with pytest.raises(ConfigError, match="model.patch_size: expected a multiple of 4 and >= 8"):
        dataclasses.replace(cfg, patch_size=30)
    with pytest.raises(ConfigError, match=r"model.widths\[1\]: expected an int in \[1, 4096\]"):
        ModelConfig(widths=(16, 5000))
    with pytest.raises(ConfigError, match=r"train.lr_min: expected in \[0, train.lr\], got 0.1"):
        TrainConfig(lr=0.01, lr_min=0.1)
    with pytest.raises(ConfigError, match="run.variant: expected one of full, .*, got 'nope'"):
        RunSpec("reflection", "nope")
    assert RunSpec("rain", "full") == RunSpec(task="rain", variant="full")
    replaced = dataclasses.replace(cfg, widths=[8, 16], patch_size=4)
    assert replaced.widths == (8, 16) and replaced.align == 2
    assert hash(replaced) == hash(ModelConfig(widths=(8, 16), patch_size=4))  # an lru_cache key
    plain = dataclasses.asdict(Params())
    assert from_dict(Params, plain) == Params()
    assert pickle.loads(pickle.dumps(Params())) == Params()


def test_one_precision_and_one_device_vocabulary():
    import torch

    from glsgn.config import autocast_dtype

    assert TrainConfig().precision == "fp32" and RestoreConfig().precision == "fp32"
    assert [autocast_dtype(p) for p in ("fp32", "bf16", "fp16")] == [
        None,
        torch.bfloat16,
        torch.float16,
    ]
    p = from_dict(Params, {"benchmark": {"precision": "fp16"}, "evaluate": {"device": "cuda:1"}})
    assert p.benchmark.precision == "fp16" and p.evaluate.device == "cuda:1"
    with pytest.raises(ConfigError, match="evaluate.device: expected one of 'auto', 'cpu', 'cuda'"):
        from_dict(Params, {"evaluate": {"device": "gpu"}})


def test_environment_yml_installs_from_pyproject_only():
    """environment.yml names no package of its own: it installs the project, so the two agree."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert sorted(re.split(r"[=<>]", d)[0] for d in conda) == ["pip", "python"]
    assert "python=3.11" in conda
    assert pip == ["-e .[dev]"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "[project.optional-dependencies]" in pyproject and "dev = [" in pyproject


def test_stage_commands_report_bad_params_in_one_line(tmp_path, capsys):
    from glsgn.cli import main

    bad = tmp_path / "params.yaml"
    bad.write_text("train: {stepz: 3}\n")
    for argv in (["prepare", "rain"], ["train", "rain-full"], ["evaluate", "rain-full"]):
        assert main([*argv, "--params", str(bad), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert err[0].startswith(f"glsgn {argv[0]}: error: {bad}: train.stepz: unknown key")
    good = tmp_path / "good.yaml"
    good.write_text("{}\n")
    assert main(["train", "nope-full", "--params", str(good), "--quiet"]) == 2
    assert "run 'nope-full' is not in train.runs" in capsys.readouterr().err


def test_restore_defaults_have_one_source(tmp_path):
    """params.yaml's restore: section states the RestoreConfig defaults, and the CLI takes each
    flag's default from that section (when the file exists), else from RestoreConfig."""
    from glsgn.cli import _restore_options, build_parser

    assert load_params(ROOT / "params.yaml").restore == RestoreConfig()
    argv = ["restore", "in.png", "-o", "out", "--checkpoint", "m.pt"]
    args = build_parser().parse_args([*argv, "--params", str(tmp_path / "none.yaml")])
    assert _restore_options(args) == RestoreConfig()
    (tmp_path / "p.yaml").write_text("restore: {precision: bf16, patch_size: 512}\n")
    args = build_parser().parse_args([*argv, "--params", str(tmp_path / "p.yaml")])
    assert _restore_options(args) == RestoreConfig(precision="bf16", patch_size=512)
    args = build_parser().parse_args(
        [*argv, "--params", str(tmp_path / "p.yaml"), "--patch-size", "auto", "--max-memory", "2GB"]
    )
    assert _restore_options(args) == RestoreConfig(precision="bf16", max_memory="2GB")
    (tmp_path / "bad.yaml").write_text("restore: {max_memory: lots}\n")
    with pytest.raises(ConfigError, match="restore.max_memory: expected a size like 2GB"):
        load_params(tmp_path / "bad.yaml")
