"""Full-resolution evaluation: `glsgn evaluate RUN --seed S` (the evaluate@RUN-S stage).

Every test image is restored whole with `glsgn.restore` (patch-streamed, seam-free). PSNR and
SSIM come from scikit-image in two conventions side by side (`glsgn.metrics`): RGB floats in
[0, 1] (psnr, ssim) and the BasicSR family's 8-bit luma with `evaluate.crop_border` cut
(psnr_y, ssim_y). LPIPS comes from the lpips package. LPIPS needs ImageNet AlexNet weights:
from torch's hub cache, or a file named in `evaluate.lpips_backbone`. Nothing is downloaded,
and without weights LPIPS is recorded as null with the reason. Writes metrics/RUN/seedS.json,
every image's metrics in metrics/RUN/seedS.csv (what glsgn.stats pairs across variants), and
the first restored images for the figures.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import resource
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .atomic import atomic_write
from .checkpoint import load_checkpoint
from .config import Params
from .data.datasets import PairedImages
from .data.io import write_image
from .metrics import psnr_ssim, psnr_ssim_y
from .restore import resolve_device, restore
from .runs import Run, environment, start

__all__ = ["evaluate", "load_lpips", "psnr_ssim"]

log = logging.getLogger(__name__)

ALEXNET_CACHE_NAME = "alexnet-owt-7be5be79.pth"  # torchvision's ImageNet AlexNet


def load_lpips(weights: str | None) -> tuple[torch.nn.Module | None, str]:
    """(LPIPS-alex model, where its backbone came from), or (None, why not)."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_CACHE_NAME
    if weights:
        path = Path(weights)
        if not path.is_file():
            return None, f"evaluate.lpips_backbone: no such file {weights!r}"
    elif cached.is_file():
        path = cached
    else:
        return None, "no AlexNet weights in torch's hub cache; evaluate.lpips_backbone is null"
    import lpips  # only now: importing it (and torchvision) costs about 2 s per stage

    # pretrained=True: the linear calibration layers shipped inside the lpips package;
    # pnet_rand=True: no torchvision download, the backbone comes from `path` below.
    model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.net.state_dict()
    mapped = {}
    for name in own:  # "slice2.3.weight" is torchvision's "features.3.weight"
        _, index, param = name.split(".")
        mapped[name] = state[f"features.{index}.{param}"]
    model.net.load_state_dict(mapped)
    return model.eval(), f"lpips (alex), backbone weights {path}"


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_kind(device: torch.device) -> str:
    return "cuda_max_allocated" if device.type == "cuda" else "process_peak_rss"


def _lpips_distance(lp, out: torch.Tensor, target: torch.Tensor, device) -> float | None:
    if lp is None:
        return None
    with torch.no_grad():
        a = out.clamp(0, 1)[None].to(device) * 2 - 1
        return float(lp(a, target[None].to(device) * 2 - 1).item())


def _measure(
    model, item: dict, device: torch.device, lp, seed: int, crop_border: int
) -> tuple[dict, np.ndarray]:
    """Restore one test image whole; -> (its row of metrics, the restored (H, W, 3) image)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    out = restore(model, item["input"], device=device, progress=False)
    seconds = time.perf_counter() - t0
    peak = _peak_mb(device)
    restored, target = out.permute(1, 2, 0).numpy(), item["target"].permute(1, 2, 0).numpy()
    psnr, ssim = psnr_ssim(restored, target)
    psnr_y, ssim_y = psnr_ssim_y(restored, target, crop_border)
    lp_value = _lpips_distance(lp, out, item["target"], device)
    row = {
        "name": item["name"],
        "seed": seed,
        "psnr": psnr,
        "ssim": ssim,
        "psnr_y": psnr_y,
        "ssim_y": ssim_y,
        "lpips": lp_value,
        "seconds": seconds,
        "peak_memory_mb": peak,
    }
    return row, restored


def _mean(rows: list[dict], key: str) -> float | None:
    """The mean over every image, or None when an image has none (a mean of some would not
    compare with another run's)."""
    vals = [r[key] for r in rows if r[key] is not None]
    return float(np.mean(vals)) if vals and len(vals) == len(rows) else None


def _summary(
    rows: list[dict], run: Run, device: torch.device, meta: dict, lp_note: str, crop_border: int
) -> tuple[dict, dict]:
    """(the scores: the stage's DVC metric, one row of `dvc metrics show`; what they were
    measured on and how: the record beside them)."""
    scores = {
        "psnr": _mean(rows, "psnr"),
        "ssim": _mean(rows, "ssim"),
        "psnr_y": _mean(rows, "psnr_y"),
        "ssim_y": _mean(rows, "ssim_y"),
        "lpips": _mean(rows, "lpips"),
        "seconds_per_image": _mean(rows, "seconds"),
        "peak_memory_mb": float(max(r["peak_memory_mb"] for r in rows)),
    }
    return scores, {
        "conventions": {
            "psnr, ssim": "RGB floats in [0, 1], no crop; SSIM 7x7 uniform window per channel",
            "psnr_y, ssim_y": f"8-bit BT.601 luma Y, {crop_border}-px border cut; "
            "SSIM 11-tap Gaussian (sigma 1.5), as BasicSR",
        },
        "lpips_note": lp_note,
        "peak_memory_kind": _peak_kind(device),
        "n_images": len(rows),
        "run": run.name,
        "seed": run.seed,
        "task": run.spec.task,
        "variant": run.spec.variant,
        "device": str(device),
        "environment": environment(device),
        "train_steps": meta["extra"].get("steps"),
        "semantic_backbone": meta["extra"].get("semantic_backbone"),
    }


def _write(root: Path, run: Run, scores: dict, record: dict, rows: list[dict]) -> None:
    """The means (the stage's metrics file), their record and every image's row (.csv)."""
    (root / run.paths.metrics).parent.mkdir(parents=True, exist_ok=True)
    for path, data in ((run.paths.metrics, scores), (run.paths.record, record)):
        with atomic_write(root / path) as f:
            f.write((json.dumps(data, indent=1) + "\n").encode())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(root / run.paths.per_image) as f:
        f.write(buf.getvalue().encode())


def evaluate(
    name: str,
    params: Params,
    root: Path = Path("."),
    seed: int | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate run `name` at `seed` (models/RUN/seedSEED.pt) on its task's test split; writes
    the means (metrics/RUN/seedSEED.json), what they were measured on (.record.json) and every
    image's metrics (.csv); returns the means and the record in one mapping."""
    run = Run.of(params, name, seed)
    device = resolve_device(params.evaluate.device)
    start(run, "evaluate", device)
    model, meta = load_checkpoint(root / run.paths.model, expect=run.model_cfg)
    ds = PairedImages(root / run.split("test"))
    lp, lp_note = load_lpips(params.evaluate.lpips_backbone)
    if lp is not None:
        lp = lp.to(device)
    null = "" if lp is not None else " (recorded as null; nothing is downloaded at run time)"
    log.info(
        "evaluate %s seed %d: %d test images, LPIPS: %s%s",
        run.name,
        run.seed,
        len(ds),
        lp_note,
        null,
    )
    keep_dir = root / run.paths.restored
    keep_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in tqdm(range(len(ds)), desc=f"evaluate {name}", disable=not progress):
        item = ds[i]
        row, restored = _measure(model, item, device, lp, run.seed, params.evaluate.crop_border)
        rows.append(row)
        if i < params.evaluate.keep_images:
            write_image(keep_dir / f"{item['name']}.png", restored)
    scores, record = _summary(rows, run, device, meta, lp_note, params.evaluate.crop_border)
    _write(root, run, scores, record, rows)
    metrics = scores | record
    log.info(
        "%s seed %d: PSNR %.2f dB, SSIM %.4f (Y: %.2f dB, %.4f), LPIPS %s",
        name,
        run.seed,
        metrics["psnr"],
        metrics["ssim"],
        metrics["psnr_y"],
        metrics["ssim_y"],
        metrics["lpips"],
    )
    return metrics
