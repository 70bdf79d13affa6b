from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path

import pytest
import yaml

from glsgn.config import (
    ConfigError,
    LossConfig,
    ModelConfig,
    Params,
    RestoreConfig,
    TrainConfig,
    from_dict,
    load_params,
)
from glsgn.data.synthesis import HazeConfig, RainConfig, ReflectionConfig

ROOT = Path(__file__).resolve().parents[1]


def test_committed_params_load_and_match_the_defaults():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params)
    assert p.model == ModelConfig()  # params.yaml states every default explicitly
    assert p.loss.consistency == LossConfig().consistency
    assert [p.data.degradation(t) for t in p.data.tasks] == [
        s() for s in (ReflectionConfig, RainConfig, HazeConfig)
    ]


def _load(tmp_path, text):
    f = tmp_path / "params.yaml"
    f.write_text(text)
    return load_params(f)


def _errors(error: ConfigError, file: Path | None = None) -> dict[str, str]:
    """A ConfigError's one-line message as {key path: what it says of that key}."""
    msg = str(error)
    assert "\n" not in msg, msg
    if file is not None:
        assert msg.startswith(f"{file}: "), msg
        msg = msg.removeprefix(f"{file}: ")
    return dict(part.partition(": ")[::2] for part in msg.split("; "))


def _assert_names(error: ConfigError, key: str, value: str, file: Path | None = None) -> None:
    errors = _errors(error, file)
    assert key in errors, (key, str(error))
    assert value in errors[key], (value, str(error))


# (params.yaml, the key path its error names, the value it names: repr)
BAD_YAML = [
    ("model: {widht: [4]}", "model.widht", "[4]"),  # unknown keys
    ("modle: {}", "modle", "{}"),
    ("data: {tasks: {x: {degradaton: rain}}}", "data.tasks.x.degradaton", "'rain'"),
    (
        "data: {tasks: {rain: {paired: {order: sorted}}}}",
        "data.tasks.rain.paired.order",
        "'sorted'",
    ),
    ("model: {blocks: two}", "model.blocks", "'two'"),  # strict types
    ("model: {blocks: 1.5}", "model.blocks", "1.5"),
    ("model: {blocks: true}", "model.blocks", "True"),
    ("model: {blocks: '3'}", "model.blocks", "'3'"),
    ("model: {pac: 1}", "model.pac", "1"),
    ("train: {lr: '1e-3'}", "train.lr", "'1e-3'"),
    ("train: {lr: true}", "train.lr", "True"),
    ("train: {channels_last: 'yes'}", "train.channels_last", "'yes'"),
    ("model: {widths: 16}", "model.widths", "16"),  # lists and their items
    ("model: {widths: [16, x]}", "model.widths[1]", "'x'"),
    ("model: {widths: [16, 0]}", "model.widths[1]", "0"),
    ("model: {widths: [16, 5000]}", "model.widths[1]", "5000"),
    ("model: {widths: ['8', 16]}", "model.widths[0]", "'8'"),
    ("data: {size: [8, 64]}", "data.size[0]", "8"),
    ("train: {seeds: [0, a]}", "train.seeds[1]", "'a'"),
    ("benchmark: {sizes: []}", "benchmark.sizes", "[]"),
    ("model: {arch: unet}", "model.arch", "'unet'"),  # literals and unions
    ("restore: {precision: fp8}", "restore.precision", "'fp8'"),
    ("train: {precision: none}", "train.precision", "'none'"),
    ("restore: {patch_size: 1}", "restore.patch_size", "1"),
    ("benchmark: {device: tpu}", "benchmark.device", "'tpu'"),
    ("evaluate: {device: gpu}", "evaluate.device", "'gpu'"),
    ("train: {crop: -1}", "train.crop", "-1"),  # null or a bounded int
    ("data: {tasks: {1: {}}}", "data.tasks.1", "1"),  # a mapping's key
    ("data: {tasks: {my-task: {}}}", "data.tasks.my-task", "'my-task'"),  # no '-': TASK-VARIANT
    ("loss: {consistency: {content: -1}}", "loss.consistency.content", "-1"),
    ("evaluate: {platform_spread: {x: 0.1}}", "evaluate.platform_spread.x", "'x'"),
    (
        "data: {tasks: {rain: {paired: {splits: {train: null}}}}}",
        "data.tasks.rain.paired.splits.train",
        "None",
    ),
    (
        "data: {tasks: {rain: {paired: {val_fraction: 0.9}}}}",
        "data.tasks.rain.paired.val_fraction",
        "0.9",
    ),
    ("model: []", "model", "[]"),  # a section that is no mapping
    ("model: {global_scale: 3}", "model.global_scale", "3"),  # rules between keys
    ("model: {local_scales: [1.0, 0.5, 0.5]}", "model.local_scales[2]", "0.5"),
    ("model: {local_scales: [0.5]}", "model.local_scales[0]", "0.5"),
    ("model: {local_scales: [1.0, 0.3]}", "model.local_scales[1]", "0.3"),
    ("model: {patch_size: 30}", "model.patch_size", "30"),
    ("model: {global_pathway: false, local_pathways: false}", "model.global_pathway", "False"),
    ("model: {fullres_widths: [8]}", "model.fullres_widths", "[8]"),
    ("restore: {max_memory: lots}", "restore.max_memory", "'lots'"),
    ("benchmark: {sizes: [16K]}", "benchmark.sizes[0]", "'16K'"),
    ("benchmark: {sizes: [1K, 960x0]}", "benchmark.sizes[1]", "'960x0'"),
    ("data: {degradations: {rain: {layers: [4, 2]}}}", "data.degradations.rain.layers", "[4, 2]"),
    ("data: {degradations: {rian: {}}}", "data.degradations.rian", "'rian'"),
    ("data: {tasks: {snow: {}}}", "data.tasks.snow.degradation", "'snow'"),
    ("data: {tasks: [haze, rain]}", "data.tasks", "['haze', 'rain']"),
    ("data: {tasks: {rain: {paired: {root: ../x}}}}", "data.tasks.rain.paired.root", "'../x'"),
    ("train: {lr: 0.001, lr_min: 0.01}", "train.lr_min", "0.01"),
    ("train: {seeds: [1, 1]}", "train.seeds", "[1, 1]"),
    ("train: {variants: [no_pac, nope]}", "train.variants[1]", "'nope'"),
    ("train: {variants: [no_content]}", "train.variants[0]", "'no_content'"),  # a term's: derived
    ("train: {variant_tasks: [rain], term_tasks: [haze, snow]}", "train.term_tasks[1]", "'snow'"),
    ("figures: {run: rain-no_pac}", "figures.run", "'rain-no_pac'"),
    ("figures: {run: snow-full}", "figures.run", "'snow-full'"),
]


@pytest.mark.parametrize("text, key, value", BAD_YAML)
def test_bad_values_name_the_file_the_key_and_the_value(tmp_path, text, key, value):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    _assert_names(e.value, key, value, tmp_path / "params.yaml")


def test_file_level_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "nope.yaml"))):
        load_params(tmp_path / "nope.yaml")
    for text in ("model: [unclosed", "- 1\n- 2\n"):
        with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "params.yaml"))):
            _load(tmp_path, text)


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
    for data, key, value in [
        ({"model": {"blocks": True}}, "model.blocks", "True"),
        ({"model": {"widths": ["8", 16]}}, "model.widths[0]", "'8'"),
        ({"train": {"lr": "0.1"}}, "train.lr", "'0.1'"),
        ({"train": {"channels_last": "yes"}}, "train.channels_last", "'yes'"),
    ]:
        with pytest.raises(ConfigError) as e:
            from_dict(Params, data)
        _assert_names(e.value, key, value)
    lr = from_dict(Params, {"train": {"lr": 1, "lr_min": 0}}).train
    assert lr.lr == 1.0 and isinstance(lr.lr, float) and isinstance(lr.lr_min, float)


def test_every_error_is_reported_with_its_key_and_value():
    with pytest.raises(ConfigError) as e:
        from_dict(Params, {"model": {"blocks": -1, "foo": 1}, "data": {"size": [8, 64]}})
    errors = _errors(e.value)
    assert list(errors) == ["model.blocks", "model.foo", "data.size[0]"]
    assert "-1" in errors["model.blocks"] and "8" in errors["data.size[0]"]
    # an unknown key's message lists the keys of its section
    assert all(f.name in errors["model.foo"] for f in dataclasses.fields(ModelConfig))
    with pytest.raises(ConfigError) as e:
        from_dict(Params, {"data": {"tasks": {"x": {"degradaton": "rain"}}}})
    assert "paired" in _errors(e.value)["data.tasks.x.degradaton"]
    # the items of a list, not the list they leave too short
    with pytest.raises(ConfigError) as e:
        from_dict(ModelConfig, {"widths": ["8", 0]}, "model")
    assert list(_errors(e.value)) == ["model.widths[0]", "model.widths[1]"]
    with pytest.raises(ConfigError) as e:  # from a checkpoint: not a mapping
        from_dict(ModelConfig, 5, "model")
    _assert_names(e.value, "model", "5")


# (a section built in code, the key path its error names, the value it names: repr)
BAD_IN_CODE = [
    (lambda: dataclasses.replace(ModelConfig(), patch_size=30), "model.patch_size", "30"),
    (lambda: ModelConfig(widths=(16, 5000)), "model.widths[1]", "5000"),
    (lambda: ModelConfig(widht=(16,)), "model.widht", "(16,)"),
    (lambda: TrainConfig(lr=0.01, lr_min=0.1), "train.lr_min", "0.1"),
    (lambda: TrainConfig(variants=("nope",)), "train.variants[0]", "'nope'"),
    (lambda: TrainConfig(5), "train.variants", "5"),  # positional: named by key
    (lambda: RestoreConfig(device="gpu"), "restore.device", "'gpu'"),
]


@pytest.mark.parametrize("build, key, value", BAD_IN_CODE)
def test_sections_built_in_code_name_the_key_and_the_value(build, key, value):
    with pytest.raises(ConfigError) as e:
        build()
    _assert_names(e.value, key, value)


def test_sections_validate_however_they_are_built():
    """In code, by dataclasses.replace and from a checkpoint's plain dict alike."""
    cfg = ModelConfig()
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
    with pytest.raises(ConfigError) as e:
        from_dict(Params, {"evaluate": {"device": "gpu"}})
    _assert_names(e.value, "evaluate.device", "'gpu'")


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
        assert err[0].startswith(f"glsgn {argv[0]}: error: {bad}: train.stepz: ")
        assert "3" in err[0].split("train.stepz: ", 1)[1]  # the value
    good = tmp_path / "good.yaml"
    good.write_text("{}\n")
    assert main(["train", "nope-full", "--params", str(good), "--quiet"]) == 2
    assert "run 'nope-full' is not one of params.yaml's runs" in capsys.readouterr().err


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
    with pytest.raises(ConfigError) as e:
        load_params(tmp_path / "bad.yaml")
    _assert_names(e.value, "restore.max_memory", "'lots'", tmp_path / "bad.yaml")
