from __future__ import annotations

import dataclasses
import pickle

import pytest
import torch

from glsgn.checkpoint import (
    CheckpointError,
    config_dict,
    config_diffs,
    load_checkpoint,
    save_checkpoint,
)
from glsgn.model import build_model

from .conftest import TINY, VARIANTS, build


@pytest.mark.parametrize("name", ["full", "fullres", "local_only"])
def test_round_trip_rebuilds_the_same_model(tmp_path, name):
    model = build(VARIANTS[name]).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, extra={"step": 7})
    loaded, meta = load_checkpoint(path)
    assert loaded.cfg == model.cfg and meta["extra"] == {"step": 7}
    assert meta["versions"]["torch"] == str(torch.__version__)
    x = torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        assert torch.equal(model(x).b_out, loaded.eval()(x).b_out)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left


def test_loading_uses_weights_only(tmp_path, monkeypatch):
    seen = {}
    real = torch.load

    def spy(*a, **k):
        seen.update(k)
        return real(*a, **k)

    monkeypatch.setattr(torch, "load", spy)
    save_checkpoint(tmp_path / "m.pt", build_model(TINY))
    load_checkpoint(tmp_path / "m.pt")
    assert seen.get("weights_only") is True


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_a_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "glsgn-checkpoint", "obj": _Evil()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path)


def test_corrupt_truncated_missing_and_foreign_files(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, build_model(TINY))
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[:1000])
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    plain = tmp_path / "plain.pt"
    torch.save(build_model(TINY).state_dict(), plain)
    for path, match in [
        (trunc, "not a readable checkpoint"),
        (junk, "not a readable checkpoint"),
        (plain, "not a glsgn checkpoint"),
        (tmp_path / "missing.pt", "no such checkpoint"),
    ]:
        with pytest.raises(CheckpointError, match=match) as e:
            load_checkpoint(path)
        assert str(path) in str(e.value)


def test_incompatible_configs_are_clear_errors(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, build_model(TINY))
    match = r"widths: checkpoint \[4, 8, 16\], expected \[8, 16, 32\]"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path, expect=dataclasses.replace(TINY, widths=(8, 16, 32)))
    # inference-only settings may differ
    load_checkpoint(path, expect=dataclasses.replace(TINY, patch_size=64))
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["halo"] = None  # a key older checkpoints store; nothing read it
    torch.save(payload, path)
    assert load_checkpoint(path)[0].cfg == TINY

    payload = torch.load(path, weights_only=True)
    payload["model_config"]["width_typo"] = 3
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="model.width_typo: unknown key"):
        load_checkpoint(path)

    payload["model_config"] = 5
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"model: expected a mapping \(got 5\)"):
        load_checkpoint(path)

    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["model_config"] = {k: v for k, v in TINY.__dict__.items()}
    payload["model_config"]["widths"] = [8, 16, 32]  # config no longer fits the weights
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_checkpoint(path)


def test_save_replaces_atomically(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, build_model(TINY))
    save_checkpoint(path, build_model(VARIANTS["no_pac"]))
    model, _ = load_checkpoint(path)
    assert not model.cfg.pac
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_config_diffs_is_the_one_comparison_of_saved_and_current_configs():
    saved = config_dict(TINY)
    assert config_diffs(saved, config_dict(TINY)) == []
    now = config_dict(dataclasses.replace(TINY, blocks=2, patch_size=64))
    assert config_diffs(saved, now) == ["blocks: saved 1, now 2", "patch_size: saved 32, now 64"]
    assert config_diffs(saved, now, ignore=("patch_size",)) == ["blocks: saved 1, now 2"]
    # tuples (a dataclass) and lists (a checkpoint) of the same values are the same config
    assert config_diffs({"widths": (4, 8)}, {"widths": [4, 8]}) == []
    assert config_diffs({"a": 1}, {"b": 1}) == ["a: saved 1, now None", "b: saved None, now 1"]
