"""Training and evaluation on a tiny prepared set: the loss falls, a killed run resumes to the
same weights, two gloo processes train under torchrun, evaluation writes honest metrics."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch
import torchvision
import yaml

from glsgn.config import LossConfig, Params, TrainConfig, from_dict
from glsgn.data.datasets import PairedImages
from glsgn.data.io import read_image
from glsgn.data.prepare import prepare
from glsgn.evaluate import evaluate, load_lpips, psnr_ssim
from glsgn.metrics import psnr_ssim_y
from glsgn.model import build_model
from glsgn.runs import RunError, native_bf16
from glsgn.train import TrainError, train

from .conftest import TINY
from .test_data import SMALL

RUNS = ("reflection-full", "reflection-fullres")  # full, and one baseline: variants below


def _params(**train) -> Params:
    t = dict(
        variants=("fullres",),
        variant_tasks=("reflection",),
        steps=8,
        batch_size=2,
        crop=32,
        warmup=2,
        checkpoint_every=4,
        val_every=4,
        log_every=1,
        lr=2e-3,
    )
    t.update(train)
    data = dataclasses.replace(SMALL, tasks={"reflection": {}})
    return Params(
        model=TINY, data=data, train=TrainConfig(**t), loss=LossConfig(backbone_layers=(1,))
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    params = _params()
    prepare("reflection", params, root / "raw", root / "data/prepared/reflection", progress=False)
    return root


def _fresh(root: Path, work: Path) -> Path:
    """A working folder that shares the prepared data and nothing else."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "data").symlink_to(root / "data")
    return work


def test_training_lowers_the_loss(root, tmp_path):
    work = _fresh(root, tmp_path)
    train("reflection-full", _params(steps=40, val_every=40), work, progress=False)
    tsv = work / "dvclive/reflection-full/seed0/plots/metrics/train/total.tsv"
    rows = list(csv.DictReader(open(tsv), delimiter="\t"))
    losses = [float(r["total"]) for r in rows]
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8]), losses
    summary = json.loads((work / "dvclive/reflection-full/seed0/metrics.json").read_text())
    assert summary["step"] == 40 and np.isfinite(summary["val"]["psnr"])
    assert (work / "models/reflection-full/seed0.pt").is_file()


def test_a_crop_that_is_all_border_is_reported(root, tmp_path, caplog):
    """TINY's pathway 3 sees a crop of 32 px as 8 px, inside its receptive radius: the log
    says so and what to do; a whole-image run (train.crop: null) says nothing."""
    work = _fresh(root, tmp_path)
    with caplog.at_level("WARNING", logger="glsgn.train"):
        train("reflection-full", _params(steps=1), work, progress=False)
    assert "receptive radius" in caplog.text and "train.crop: null" in caplog.text
    # the crop it names is the smallest valid one: on the model's grid, clear of every radius
    named = int(re.search(r"or (\d+) or more", caplog.text).group(1))
    model = build_model(TINY)
    clear = [all(c // s.factor > 2 * s.radius for s in model.plan) for c in (named, named - 16)]
    assert named % model.pad_multiple == 0 and clear == [True, False], named
    caplog.clear()
    work = _fresh(root, tmp_path / "whole")
    with caplog.at_level("WARNING", logger="glsgn.train"):
        train("reflection-full", _params(steps=1, crop=None), work, progress=False)
    assert "receptive radius" not in caplog.text


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_killed_run_resumes_to_the_same_weights(root, tmp_path, ema):
    a, b = _fresh(root, tmp_path / "a"), _fresh(root, tmp_path / "b")
    params = _params(ema=ema)
    train("reflection-full", params, a, progress=False)
    assert train("reflection-full", params, b, stop_at=6, progress=False) is None  # "killed"
    state = torch.load(b / "checkpoints/reflection-full/seed0/last.pt", weights_only=True)
    assert state["step"] == 4
    train("reflection-full", params, b, progress=False)  # resumes from step 4
    # its curves equal the uninterrupted run's: steps 1-4 kept, 5-6 of the killed run dropped
    logs = "dvclive/reflection-full/seed0/plots/metrics"
    for tsv in ("train/total.tsv", "train/reconstruction.tsv", "val/psnr.tsv"):
        assert (b / logs / tsv).read_text() == (a / logs / tsv).read_text(), tsv
    wa = torch.load(a / "models/reflection-full/seed0.pt", weights_only=True)["state_dict"]
    wb = torch.load(b / "models/reflection-full/seed0.pt", weights_only=True)["state_dict"]
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    # A finished run trained again (DVC reruns it when a dependency changed) starts over.
    train("reflection-full", params, b, progress=False)
    wc = torch.load(b / "models/reflection-full/seed0.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    # With train.ema the release holds the average, not the last step's weights.
    last = torch.load(b / "checkpoints/reflection-full/seed0/last.pt", weights_only=True)
    same = all(torch.equal(last["model"][k], wa[k]) for k in wa)
    assert same == (ema == 0) and (last["ema"] is None) == (ema == 0)
    # A killed run cannot resume under a different recipe.
    train("reflection-full", params, b, stop_at=4, progress=False)
    with pytest.raises(TrainError, match="different train configuration"):
        train("reflection-full", _params(lr=1e-3, ema=ema), b, progress=False)
    # ... nor in other arithmetic: a bf16-native CPU's state on one that falls back to fp32
    path = b / "checkpoints/reflection-full/seed0/last.pt"
    state = torch.load(path, weights_only=True)
    assert state["computes_in"] == "fp32"
    torch.save({**state, "computes_in": "bf16"}, path)
    with pytest.raises(TrainError, match="computing in bf16, but this machine computes in fp32"):
        train("reflection-full", params, b, progress=False)


def test_one_pair_is_learnt(root, tmp_path):
    """On a fixed batch (one pair, validated on itself) the recipe fits: the restored pair
    gains over its input, which a recipe that does not learn would not."""
    work = tmp_path / "one"
    src = root / "data/prepared/reflection/train"
    for split in ("train", "val"):
        for side in ("input", "target"):
            (work / "data/prepared/reflection" / split / side).mkdir(parents=True)
            first = sorted((src / side).iterdir())[0]
            (work / "data/prepared/reflection" / split / side / first.name).symlink_to(first)
    params = _params(steps=80, batch_size=1, crop=None, val_every=80, checkpoint_every=80)
    no_semantic = {**params.loss.consistency, "semantic": 0.0}
    params = dataclasses.replace(params, loss=LossConfig(consistency=no_semantic))
    train("reflection-full", params, work, progress=False)
    val = work / "dvclive/reflection-full/seed0/plots/metrics/val/psnr.tsv"
    psnr = float(list(csv.DictReader(open(val), delimiter="\t"))[-1]["psnr"])
    x, y = (read_image(sorted((src / s).iterdir())[0]).rgb for s in ("input", "target"))
    identity = psnr_ssim(x, y)[0]
    assert psnr > identity + 3, (psnr, identity)


def test_unknown_run_is_a_clear_error(root, tmp_path):
    with pytest.raises(RunError, match="'reflection-nope' is not one of params.yaml's runs"):
        train("reflection-nope", _params(), tmp_path, progress=False)
    with pytest.raises(RunError, match="'reflection-nope' is not one of params.yaml's runs"):
        evaluate("reflection-nope", _params(), tmp_path, progress=False)
    with pytest.raises(RunError, match=r"seed 7 of run 'reflection-full' is not in train.seeds"):
        train("reflection-full", _params(), tmp_path, seed=7, progress=False)


def test_train_nproc_launches_torchrun_with_two_gloo_processes(root, tmp_path):
    """train.nproc: 2 makes `glsgn train`, the train stages' command, run itself under
    torchrun: two processes, each with its half of every batch."""
    work = _fresh(root, tmp_path)
    params = yaml.safe_load(yaml.safe_dump(dataclasses.asdict(_params(steps=4, nproc=2))))
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    from_dict(Params, yaml.safe_load((work / "params.yaml").read_text()))  # still valid
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(
        [sys.executable, "-m", "glsgn", "train", "reflection-full", "--quiet"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "batch 2 x 2" in r.stderr  # two processes, each with its own half of the batch
    assert (work / "models/reflection-full/seed0.pt").is_file()


def test_evaluate_writes_metrics_and_says_why_lpips_is_missing(root, tmp_path, monkeypatch):
    work = _fresh(root, tmp_path)
    params = _params()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    for run in RUNS:
        train(run, params, work, progress=False)
        m = evaluate(run, params, work, progress=False)
        assert m["lpips"] is None and "no AlexNet weights" in m["lpips_note"]
        assert 5 < m["psnr"] < 60 and 0 < m["ssim"] <= 1 and m["n_images"] == 1
        assert m["semantic_backbone"] == "random"
    saved = json.loads((work / "metrics/reflection-fullres/seed0.json").read_text())
    record = json.loads((work / "metrics/reflection-fullres/seed0.record.json").read_text())
    # the metric: scores alone, one row of `dvc metrics show`; the record says what they are
    assert set(saved) == {
        "psnr",
        "ssim",
        "psnr_y",
        "ssim_y",
        "lpips",
        "seconds_per_image",
        "peak_memory_mb",
    }
    assert record["variant"] == "fullres" and saved["psnr"] == m["psnr"]
    env = record["environment"]  # what the last bits depend on (README "Reproducibility")
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    rows = list(csv.DictReader(open(work / "metrics/reflection-fullres/seed0.csv")))
    assert len(rows) == 1 and rows[0]["lpips"] == ""
    assert len(list((work / "reports/restored/reflection-full/seed0").glob("*.png"))) == 1
    # the field's convention, side by side: recomputed from the restored image as written
    name = rows[0]["name"]
    kept = read_image(work / f"reports/restored/reflection-fullres/seed0/{name}.png").rgb
    target = read_image(work / f"data/prepared/reflection/test/target/{name}.png").rgb
    psnr_y, ssim_y = psnr_ssim_y(kept, target, params.evaluate.crop_border)
    assert float(rows[0]["psnr_y"]) == pytest.approx(psnr_y, abs=1e-9)
    assert float(rows[0]["ssim_y"]) == pytest.approx(ssim_y, abs=1e-9)
    assert (
        saved["psnr_y"] == pytest.approx(psnr_y, abs=1e-9)
        and "psnr_y, ssim_y" in record["conventions"]
    )


def test_learning_curve_is_what_evaluation_measures(root, tmp_path):
    """train.curve_every logs test PSNR/SSIM against samples seen; its last point is the
    released model scored as `glsgn evaluate` scores it, and the table reads it back."""
    from glsgn.results import learning_curves

    work = _fresh(root, tmp_path)
    params = _params(curve_every=4, ema=0.9, variants=())  # reflection-full alone
    train("reflection-full", params, work, progress=False)
    m = evaluate("reflection-full", params, work, progress=False)
    curves = work / "dvclive/reflection-full/seed0/plots/metrics/test"
    psnr = [float(r["psnr"]) for r in csv.DictReader(open(curves / "psnr.tsv"), delimiter="\t")]
    ssim = [float(r["ssim"]) for r in csv.DictReader(open(curves / "ssim.tsv"), delimiter="\t")]
    assert len(psnr) == len(ssim) == 2  # steps 4 and 8
    assert psnr[-1] == pytest.approx(m["psnr"], abs=1e-4)
    assert ssim[-1] == pytest.approx(m["ssim"], abs=1e-5)
    (row,) = learning_curves(params, work / "dvclive", "reflection")
    assert row["variant"] == "full" and list(row["samples"]) == [8, 16]
    val = [
        float(r["psnr"])
        for r in csv.DictReader(open(curves.parent / "val/psnr.tsv"), delimiter="\t")
    ]
    # validations at steps 4 and 8: the last quarter starts at 6, read from step 4
    assert row["final_psnr"] == psnr[-1] and row["val_gain_since"] == 4
    assert row["val_gain"] == pytest.approx(val[-1] - val[0])


def test_validation_off_and_the_curve_on_fewer_images(root, tmp_path, monkeypatch):
    """train.val_every null: no validation at all; train.monitor_images N: validation and the
    learning curve restore the first N pairs of their splits (their cost at UHR), and the
    curve's last point is then that subset scored as evaluation scores it."""
    import glsgn.train as t
    from glsgn.results import learning_curves

    restored = []
    real = t.restore
    monkeypatch.setattr(t, "restore", lambda m, x, **kw: restored.append(x) or real(m, x, **kw))
    params = _params(val_every=None, curve_every=4, monitor_images=1, variants=())
    splits = dataclasses.replace(params.data.splits, test=2)
    params = dataclasses.replace(params, data=dataclasses.replace(params.data, splits=splits))
    work = tmp_path
    prepare("reflection", params, work / "raw", work / "data/prepared/reflection", progress=False)
    train("reflection-full", params, work, progress=False)
    logs = work / "dvclive/reflection-full/seed0/plots/metrics"
    assert not (logs / "val").exists() and (logs / "test/psnr.tsv").is_file()
    assert len(restored) == 2  # the curve at steps 4 and 8, one test image each
    pairs = PairedImages(work / "data/prepared/reflection/test")
    assert len(pairs) > 1 and torch.equal(restored[-1], pairs[0]["input"])
    (row,) = learning_curves(params, work / "dvclive", "reflection")
    assert np.isnan(row["val_gain"])


def test_cpu_precision_follows_the_hardware(monkeypatch, caplog):
    """bf16 autocast on a CPU only where it runs bf16 natively; fp16 never on a CPU."""
    import glsgn.train as t

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert t.autocast_for("bf16", cuda) == torch.bfloat16
    assert t.autocast_for("fp16", cuda) == torch.float16
    monkeypatch.setattr(t, "native_bf16", lambda: True)
    assert t.autocast_for("bf16", cpu) == torch.bfloat16 and t.autocast_for("fp32", cpu) is None
    monkeypatch.setattr(t, "native_bf16", lambda: False)
    with caplog.at_level("INFO", logger="glsgn.train"):
        assert t.autocast_for("bf16", cpu) is None and t.autocast_for("fp16", cpu) is None
    assert "no native bf16 on this CPU" in caplog.text and "no native fp16" in caplog.text


@pytest.mark.skipif(not native_bf16(), reason="this CPU has no native bf16")
def test_cpu_bf16_step_matches_fp32():
    """One training step's loss and gradient under CPU bf16 autocast (channels_last) against
    fp32: the loss and the gradient's norm within 2 %, its direction within cosine 0.999, and
    no parameter tensor's gradient off by more than 2 % of the whole gradient's norm. Larger
    gaps would mean a layer runs outside autocast's safe list (a reduction or a norm in
    bf16), not rounding."""
    from glsgn.losses import GLSGNLoss, TrainBatch
    from glsgn.model import build_model
    from glsgn.model.resample import Region

    torch.manual_seed(0)
    model = build_model(TINY).to(memory_format=torch.channels_last)
    loss_fn = GLSGNLoss(LossConfig(backbone_layers=(1,)))
    g = torch.Generator().manual_seed(1)
    y = torch.rand(2, 3, 64, 96, generator=g)
    x = (0.6 * y + 0.3 * torch.rand(2, 3, 64, 96, generator=g)).clamp(0, 1)
    pool = torch.nn.functional.avg_pool2d
    batch = TrainBatch(x, y, pool(x, 4), pool(y, 4), region=Region.whole(64, 96))
    # train until the zero-initialised heads are off zero: at init their gradients are
    # degenerate (the output is the input), which would make the comparison vacuous
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        out = model(x, global_view=batch.x_global, region=batch.region)
        loss_fn(out, batch)["total"].backward()
        opt.step()

    def step(amp: bool) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(x, global_view=batch.x_global, region=batch.region)
            loss = loss_fn(out, batch)["total"]
        loss.backward()
        return float(loss), [q.grad.flatten().clone() for q in model.parameters()]

    (l32, g32), (l16, g16) = step(False), step(True)
    assert abs(l16 - l32) < 0.02 * l32, (l16, l32)
    whole32, whole16 = torch.cat(g32), torch.cat(g16)
    assert torch.nn.functional.cosine_similarity(whole32, whole16, dim=0) > 0.999
    assert abs(whole16.norm() - whole32.norm()) < 0.02 * whole32.norm()
    # per tensor, against the whole gradient's norm: a tensor whose own gradient is ~0 (a
    # bias of 1e-4 where the whole is 1) may point anywhere under rounding without harm
    worst = max(float((a - b).norm()) for a, b in zip(g32, g16, strict=True))
    assert worst < 0.02 * whole32.norm(), worst


def test_psnr_ssim_agree_with_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.image")
    rng = np.random.default_rng(0)
    a = rng.random((48, 64, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1).astype(np.float32)
    psnr, ssim = psnr_ssim(b, a)
    ta, tb = (torch.from_numpy(v).permute(2, 0, 1)[None].double() for v in (a, b))
    ref_psnr = tm.peak_signal_noise_ratio(tb, ta, data_range=1.0).item()
    ref_ssim = tm.structural_similarity_index_measure(
        tb, ta, data_range=1.0, gaussian_kernel=False, kernel_size=7
    ).item()
    assert abs(psnr - ref_psnr) < 1e-5
    assert abs(ssim - ref_ssim) < 1e-3


def _basicsr_psnr_ssim_y(restored: np.ndarray, target: np.ndarray, crop: int):
    """BasicSR's calculate_psnr / calculate_ssim (test_y_channel=True), recomputed from its
    formulas: uint8 BGR images, Y = 16 + BGR . (24.966, 128.553, 65.481) / 255 (on [0, 1]
    values, times 255), the border cropped, SSIM with cv2's 11-tap Gaussian over the valid
    region."""
    import cv2

    def y(rgb01):
        bgr = np.round(np.clip(rgb01, 0, 1) * 255).astype(np.uint8)[..., ::-1]
        v = bgr.astype(np.float32) / 255.0
        return (np.dot(v, [24.966, 128.553, 65.481]) + 16.0) / 255.0 * 255.0

    a, b = (y(v)[crop:-crop, crop:-crop].astype(np.float64) for v in (restored, target))
    psnr = 10 * np.log10(255.0**2 / np.mean((a - b) ** 2))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = cv2.getGaussianKernel(11, 1.5)
    w = np.outer(k, k.transpose())
    f = lambda x: cv2.filter2D(x, -1, w)[5:-5, 5:-5]  # noqa: E731
    mu1, mu2 = f(a), f(b)
    s11, s22, s12 = f(a * a) - mu1**2, f(b * b) - mu2**2, f(a * b) - mu1 * mu2
    ssim = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))
    return psnr, float(ssim.mean())


@pytest.mark.parametrize("crop", [4, 1])
def test_y_channel_metrics_agree_with_basicsr(crop):
    rng = np.random.default_rng(crop)
    a = rng.random((48, 64, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1).astype(np.float32)
    ref = _basicsr_psnr_ssim_y(b, a, crop)
    psnr, ssim = psnr_ssim_y(b, a, crop)
    assert abs(psnr - ref[0]) < 1e-6 and abs(ssim - ref[1]) < 1e-6
    # a different convention, a different number: the RGB float metric is not this one
    assert abs(psnr - psnr_ssim(b, a)[0]) > 0.1


def test_y_channel_metrics_cut_the_border_and_see_8_bits():
    rng = np.random.default_rng(0)
    a = rng.random((40, 40, 3)).astype(np.float32)
    b = a.copy()
    b[:4] = 1 - b[:4]  # damage only inside the 4-px border
    assert psnr_ssim_y(b, a, 4) == (float("inf"), 1.0)
    assert psnr_ssim_y(b, a, 0)[0] < 30
    # below half a grey level, 8 bits cannot see a difference; RGB floats can
    c = np.clip(a + 0.4 / 255, 0, 1)
    same = np.round(c * 255) == np.round(a * 255)
    assert psnr_ssim_y(np.where(same, c, a), a, 4)[0] == float("inf")
    with pytest.raises(ValueError, match="too small for SSIM"):
        psnr_ssim_y(a[:16, :16], a[:16, :16], 4)


def test_lpips_loads_backbone_weights_from_a_file(tmp_path, monkeypatch):
    torch.manual_seed(5)
    alex = torchvision.models.alexnet(weights=None)
    path = tmp_path / "alexnet.pth"
    torch.save(alex.state_dict(), path)
    model, note = load_lpips(str(path))
    assert str(path) in note
    # Reference: the lpips package building its network around this very AlexNet.
    monkeypatch.setattr(lpips.pretrained_networks.tv, "alexnet", lambda *a, **k: alex)
    reference = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    x, y = torch.rand(2, 1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model(x, y), reference(x, y), atol=1e-6)
    assert load_lpips(str(tmp_path / "missing.pth"))[0] is None


def test_loader_workers_default_to_the_machine(monkeypatch):
    from glsgn.train import loader_workers

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert loader_workers(TrainConfig(workers=3), cpu) == 3
    assert loader_workers(TrainConfig(), cpu) == 0  # a worker would take a core from the step
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert loader_workers(TrainConfig(), cuda) == 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert loader_workers(TrainConfig(), cuda) == 1


def test_each_seed_is_a_run_of_its_own(root, tmp_path):
    """Seeds train apart (own weights, logs, checkpoints, metrics), and listing another seed
    does not stop a seed's interrupted run from resuming."""
    work = _fresh(root, tmp_path)
    one, two = _params(steps=4, seeds=(0,)), _params(steps=4, seeds=(0, 1))
    assert train("reflection-full", one, work, stop_at=2, progress=False) is None
    assert train("reflection-full", two, work, seed=0, progress=False) == (
        work / "models/reflection-full/seed0.pt"
    )
    assert train("reflection-full", two, work, seed=1, progress=False) == (
        work / "models/reflection-full/seed1.pt"
    )
    w0, w1 = (
        torch.load(work / f"models/reflection-full/seed{s}.pt", weights_only=True) for s in (0, 1)
    )
    assert w1["extra"]["seed"] == 1
    assert any(not torch.equal(w0["state_dict"][k], w1["state_dict"][k]) for k in w0["state_dict"])
    m = evaluate("reflection-full", two, work, seed=1, progress=False)
    assert m["seed"] == 1 and (work / "dvclive/reflection-full/seed1/metrics.json").is_file()
    rows = list(csv.DictReader(open(work / "metrics/reflection-full/seed1.csv")))
    assert [r["seed"] for r in rows] == ["1"]


@pytest.mark.slow
def test_train_throughput_benchmark_runs(monkeypatch, capsys):
    """benchmarks/train_throughput.py end to end on a tiny size, a step of each setting: it
    times train.py's own pieces (`train_step`, `train`), so a change there that breaks it
    fails here rather than on the next GPU run."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"
    spec = importlib.util.spec_from_file_location("train_throughput", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look themselves up
    spec.loader.exec_module(bench)
    tiny = "--pairs 1 --size 64x48 --crop 32 --samples 2 --uncached-samples 1 --step-crop 32 "
    tiny += "--step-batch 1 --steps 1 --cpu-steps --precision fp32 --train-steps 1"
    monkeypatch.setattr(sys, "argv", ["train_throughput.py", *tiny.split()])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the settings run here
    bench.main()
    lines = capsys.readouterr().out.splitlines()
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines if ln.startswith("| ")]
    got = {(section, what): value for section, what, value, _ in rows[1:]}  # under the header
    assert float(got["data", "items/s per worker, cached"]) > 0
    for variant in ("full", "fullres"):
        assert float(got["step", f"{variant}: GFLOP per sample (forward + backward)"]) > 0
        assert float(got["step", f"{variant}: model step samples/s on cpu, fp32"]) > 0
    assert float(got["settings", "glsgn train, fp32"].split()[0]) > 0
