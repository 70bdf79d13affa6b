"""Plotting for the notebooks and paper figures: images, attention overlays, pyramid bands,
zoomed crops and metric bar charts. Functions return arrays or matplotlib figures; saving
writes PNG and PDF atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files, not windows: notebooks render figures inline anyway

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .atomic import atomic_write  # noqa: E402

__all__ = [
    "VARIANT_ORDER",
    "load_metrics",
    "to_image",
    "attention_overlay",
    "band_image",
    "crop",
    "image_grid",
    "metric_bars",
    "save_figure",
]


VARIANT_ORDER = ("full", "no_content", "no_attention", "no_intensity", "no_semantic",
                 "global_only", "local_only", "no_pyramid", "fullres")  # fmt: skip


def load_metrics(metrics_dir: str | Path, task: str) -> list[dict]:
    """The evaluate stage's metrics/{task}/*.json, `full` first, then ablations, baselines."""
    import json

    rows = [json.loads(p.read_text()) for p in sorted(Path(metrics_dir, task).glob("*.json"))]
    if not rows:
        raise FileNotFoundError(f"{Path(metrics_dir, task)}: no metrics (run dvc repro first)")
    order = {v: i for i, v in enumerate(VARIANT_ORDER)}
    return sorted(rows, key=lambda r: order.get(r["variant"], len(order)))


def to_image(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) / (1, 3, H, W) / (H, W, 3) / (H, W) -> (H, W, 3) float in [0, 1]."""
    a = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, float)
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3):
        raise ValueError(f"expected an image of 1 or 3 channels, got shape {np.shape(x)}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.clip(a, 0.0, 1.0)


def _resize(a: np.ndarray, h: int, w: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(a, np.float32))[None, None]
    return torch.nn.functional.interpolate(t, (h, w), mode="bilinear", align_corners=False)[
        0, 0
    ].numpy()


def attention_overlay(
    image: torch.Tensor | np.ndarray,
    attention: torch.Tensor | np.ndarray,
    alpha: float = 0.6,
    cmap: str = "inferno",
) -> np.ndarray:
    """An attention map (A_g or A_i, values in [0, 1], any grid) resized to the image and
    blended over it in a perceptually uniform colour map."""
    img = to_image(image)
    att = to_image(attention)[..., 0]
    att = _resize(att, *img.shape[:2])
    colour = plt.get_cmap(cmap)(np.clip(att, 0, 1))[..., :3]
    return (1 - alpha) * img + alpha * colour


def band_image(band: torch.Tensor | np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """A signed pyramid band (h_i, LP.png) as a grey image: |band| scaled so that the given
    percentile maps to white."""
    a = band.detach().float().cpu().numpy() if isinstance(band, torch.Tensor) else np.asarray(band)
    if a.ndim == 4:
        a = a[0]
    mag = np.abs(a).mean(axis=0) if a.ndim == 3 else np.abs(a)
    top = float(np.percentile(mag, percentile)) or 1.0
    return np.repeat(np.clip(mag / top, 0, 1)[..., None], 3, axis=-1)


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The part (y0, y1, x0, x1) of an (H, W, 3) image, for zoomed comparisons."""
    y0, y1, x0, x1 = box
    h, w = image.shape[:2]
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        raise ValueError(f"crop box {box} is not inside an image of {h}x{w}")
    return image[y0:y1, x0:x1]


def image_grid(
    images: Sequence[np.ndarray], titles: Sequence[str], cols: int | None = None, size: float = 3.0
) -> Figure:
    """Images side by side (rows of `cols`), each titled, without axes."""
    if len(images) != len(titles):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    cols = cols or len(images)
    rows = -(-len(images) // cols)
    h, w = images[0].shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows * h / w + 0.4 * rows),
                             squeeze=False)  # fmt: skip
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(to_image(img), interpolation="nearest")
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def metric_bars(
    values: dict[str, float | None],
    metric: str,
    reference: str = "full",
    unit: str = "",
    title: str = "",
    missing: str = "not computed",
) -> Figure:
    """One bar per variant, labelled with its value and its difference to `reference`;
    a null value (LPIPS without weights) is an empty slot marked 'n/a', and a metric with
    no value at all says `missing` instead of drawing an empty scale."""
    names = list(values)
    ref = values.get(reference)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(names) + 1), 3.2))
    xs = np.arange(len(names))
    heights = [v if v is not None else 0.0 for v in values.values()]
    colours = ["tab:blue" if n == reference else "tab:gray" for n in names]
    ax.bar(xs, heights, color=colours)
    known = [v for v in values.values() if v is not None]
    if known:
        lo, hi = min(known), max(known)
        pad = (hi - lo) * 0.3 or abs(hi) * 0.05 or 1.0
        ax.set_ylim(lo - pad, hi + pad)
    for x, (n, v) in zip(xs, values.items(), strict=True):
        if v is None:
            ax.text(x, ax.get_ylim()[0], "n/a", ha="center", va="bottom", fontsize=8)
            continue
        label = f"{v:.4g}" if ref is None or n == reference else f"{v:.4g}\n({v - ref:+.2g})"
        ax.text(x, v, label, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(xs, names, rotation=30, ha="right")
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
    if not known:
        ax.set_yticks([])
        ax.text(0.5, 0.5, f"{metric}: {missing}", transform=ax.transAxes, ha="center",
                va="center", wrap=True, fontsize=9)  # fmt: skip
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, stem: str | Path, dpi: int = 150) -> list[Path]:
    """Write `stem`.png and `stem`.pdf atomically; returns the two paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = stem.with_suffix(f".{ext}")
        with atomic_write(path) as f:
            fig.savefig(f, format=ext, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths
