from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from glsgn.config import ConfigError, ModelConfig, Params, RestoreConfig, from_dict, load_params

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
    "text, key, expected",
    [
        ("model: {widht: [4]}", "model.widht", "unknown key"),
        ("modle: {}", "modle", "unknown key"),
        ("model: {blocks: two}", "model.blocks", "expected an int"),
        ("model: {blocks: 1.5}", "model.blocks", "expected an int"),
        ("model: {pac: 1}", "model.pac", "expected true or false"),
        ("model: {widths: 16}", "model.widths", "expected a list of integers"),
        ("model: {widths: [16, x]}", "model.widths[1]", "expected an int"),
        ("model: {widths: [16, 0]}", "model.widths[1]", "in [1, 4096]"),
        ("model: {global_scale: 3}", "model.global_scale", "power of two"),
        ("model: {local_scales: [1.0, 0.5, 0.5]}", "model.local_scales[2]", "decreasing"),
        ("model: {local_scales: [0.5]}", "model.local_scales[0]", "1.0"),
        ("model: {local_scales: [1.0, 0.3]}", "model.local_scales[1]", "1/2^k"),
        ("model: {patch_size: 30}", "model.patch_size", "multiple of 4"),
        ("model: {halo: -1}", "model.halo", "null or an int"),
        ("model: {arch: unet}", "model.arch", "one of 'glsgn', 'fullres'"),
        ("model: {global_pathway: false, local_pathways: false}", "model.global_pathway", "true"),
        ("model: {fullres_widths: [8]}", "model.fullres_widths", "3 levels"),
        ("restore: {precision: fp8}", "restore.precision", "one of"),
        ("model: []", "model", "expected a mapping"),
        ("benchmark: {sizes: [16K]}", "benchmark.sizes[0]", "1K, 2K, 4K, 8K or WIDTHxHEIGHT"),
        ("benchmark: {sizes: [1K, 960x0]}", "benchmark.sizes[1]", "WIDTHxHEIGHT"),
        ("benchmark: {sizes: []}", "benchmark.sizes", "at least one size"),
        ("benchmark: {device: tpu}", "benchmark.device", "one of"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, key, expected):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    msg = str(e.value)
    assert f"{key}:" in msg and expected in msg, msg
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
        "8K", "100x50")  # fmt: skip


def test_lists_become_tuples_and_ints_are_accepted_as_floats():
    cfg = from_dict(ModelConfig, {"widths": [8, 16], "local_scales": [1, 0.5]}, "model")
    assert cfg.widths == (8, 16) and cfg.local_scales == (1.0, 0.5)
    assert isinstance(cfg.local_scales[0], float)


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
