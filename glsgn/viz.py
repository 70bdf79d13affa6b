"""Plotting for the notebooks and paper figures: images, attention overlays, pyramid bands,
zoomed crops, metric bar charts and curves. Functions return arrays or matplotlib figures;
saving writes PNG and PDF atomically. What the pipeline wrote is loaded by glsgn.results.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files, not windows: notebooks render figures inline anyway

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from .atomic import atomic_write  # noqa: E402

__all__ = [
    "to_image",
    "attention_overlay",
    "band_image",
    "band_magnitude",
    "heatmap",
    "crop",
    "pick_crop",
    "image_grid",
    "zoom_grid",
    "one_to_one",
    "zoom_side",
    "metric_bars",
    "forest_plot",
    "curve_grid",
    "efficiency_panels",
    "save_figure",
]

SAVE_DPI = 150  # figures are saved at this resolution (save_figure)


def to_image(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) / (1, 3, H, W) / (H, W, 3) / (H, W) -> (H, W, 3) float in [0, 1]."""
    a = _numpy(x)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3):
        raise ValueError(f"expected an image of 1 or 3 channels, got shape {np.shape(x)}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.clip(a, 0.0, 1.0)


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """A tensor or array as float numpy, the batch dimension of a (1, C, H, W) dropped."""
    a = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, float)
    return a[0] if a.ndim == 4 else a


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
    stretch: bool = False,
) -> np.ndarray:
    """An attention map (A_g or A_i, values in [0, 1], any grid) resized to the image and
    blended over it in a perceptually uniform colour map. `stretch` maps the map's own
    [min, max] onto the colour map: an early, nearly flat map still shows where it differs."""
    img = to_image(image)
    att = to_image(attention)[..., 0]
    att = _resize(att, *img.shape[:2])
    if stretch:
        att = (att - att.min()) / max(float(att.max() - att.min()), 1e-12)
    colour = plt.get_cmap(cmap)(np.clip(att, 0, 1))[..., :3]
    return (1 - alpha) * img + alpha * colour


def band_image(
    band: torch.Tensor | np.ndarray, percentile: float = 99.0, vmax: float | None = None
) -> np.ndarray:
    """A signed pyramid band (h_i, LP.png) as a grey image: |band| (mean over channels) scaled
    so that the given percentile, or `vmax` when given, maps to white. Pass h_i's scale as
    `vmax` to show the gated band h'_i on the same scale."""
    mag = band_magnitude(band)
    top = vmax if vmax is not None else float(np.percentile(mag, percentile))
    return np.repeat(np.clip(mag / (top or 1.0), 0, 1)[..., None], 3, axis=-1)


def heatmap(
    values: torch.Tensor | np.ndarray, cmap: str = "viridis", vmax: float = 1.0
) -> np.ndarray:
    """Values in [0, vmax] (a fusion mask m_i; averaged over channels) in a colour map,
    (H, W, 3)."""
    return plt.get_cmap(cmap)(np.clip(band_magnitude(values) / vmax, 0, 1))[..., :3]


def band_magnitude(band: torch.Tensor | np.ndarray) -> np.ndarray:
    """|band| averaged over channels, (H, W)."""
    a = _numpy(band)
    return np.abs(a).mean(axis=0) if a.ndim == 3 else np.abs(a)


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The part (y0, y1, x0, x1) of an (H, W, 3) image, for zoomed comparisons."""
    y0, y1, x0, x1 = box
    h, w = image.shape[:2]
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        raise ValueError(f"crop box {box} is not inside an image of {h}x{w}")
    return image[y0:y1, x0:x1]


def pick_crop(error: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The (y0, y1, x0, x1) box of `size` (h, w) with the largest mean of an (H, W) error map:
    where the zoomed crops of a comparison show the most. The box is clipped to the image."""
    e = np.asarray(error, np.float64)
    if e.ndim != 2:
        raise ValueError(f"expected an (H, W) error map, got shape {e.shape}")
    h, w = min(size[0], e.shape[0]), min(size[1], e.shape[1])
    if h < 1 or w < 1:
        raise ValueError(f"crop size {size} must be positive")
    s = np.pad(e, ((1, 0), (1, 0))).cumsum(0).cumsum(1)  # summed-area table
    sums = s[h:, w:] - s[:-h, w:] - s[h:, :-w] + s[:-h, :-w]
    y0, x0 = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y0), int(y0) + h, int(x0), int(x0) + w


def _grid(n: int, cols: int | None) -> tuple[int, int]:
    cols = max(1, min(cols or n, n))
    return -(-n // cols), cols


def image_grid(
    images: Sequence[np.ndarray | torch.Tensor | None],
    titles: Sequence[str],
    cols: int | None = None,
    size: float = 3.0,
    colorbar: tuple[str, str] | None = None,
    colorbar_ticks: dict[float, str] | None = None,
) -> Figure:
    """Images side by side (rows of `cols`), each titled, without axes; None leaves a panel
    empty. `colorbar` = (colour map, label) adds one shared 0-1 scale, for attention maps
    and masks; `colorbar_ticks` relabels it ({0: "min", 1: "max"} for stretched maps)."""
    if len(images) != len(titles):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    first = next((to_image(i) for i in images if i is not None), None)
    if first is None:
        raise ValueError("image_grid: no images")
    rows, cols = _grid(len(images), cols)
    h, w = first.shape[:2]
    fig, axes = plt.subplots(
        rows,
        cols,
        squeeze=False,
        layout="constrained",
        figsize=(size * cols + (1.0 if colorbar else 0), size * rows * h / w + 0.35 * rows),
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles, strict=False):
        if img is not None:
            ax.imshow(to_image(img), interpolation="nearest")
            ax.set_title(title, fontsize=10)
    if colorbar:
        cmap, label = colorbar
        mappable = plt.cm.ScalarMappable(Normalize(0, 1), plt.get_cmap(cmap))
        bar = fig.colorbar(mappable, ax=axes, shrink=min(0.8, 1.6 / rows), label=label)
        if colorbar_ticks:
            bar.set_ticks(list(colorbar_ticks), labels=list(colorbar_ticks.values()))
    return fig


def zoom_grid(
    images: Sequence[np.ndarray | torch.Tensor],
    titles: Sequence[str],
    box: tuple[int, int, int, int] | Sequence[tuple[int, int, int, int]],
    cols: int | None = None,
    size: float = 3.0,
) -> Figure:
    """A comparison: each image whole with its box outlined, and under it the box enlarged at
    full resolution, titled with its size and the magnification it is drawn at in a figure
    saved by `save_figure` (1.0x: one image pixel per figure pixel). `box`: one for every
    image, or one per image. All images share one size; rows of `cols` panels."""
    if len(images) != len(titles):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    imgs = [to_image(i) for i in images]
    if len({i.shape for i in imgs}) != 1:
        raise ValueError(f"zoom_grid: images differ in size: {sorted({i.shape for i in imgs})}")
    boxes = [box] * len(imgs) if isinstance(box[0], int) else list(box)
    if len(boxes) != len(imgs) or len({(b[1] - b[0], b[3] - b[2]) for b in boxes}) != 1:
        raise ValueError(f"zoom_grid: {len(imgs)} images need one box or one each of one size")
    crops = [crop(i, b) for i, b in zip(imgs, boxes, strict=True)]
    rows, cols = _grid(len(imgs), cols)
    (h, w), (ch, cw) = imgs[0].shape[:2], crops[0].shape[:2]
    ratios = [h / w, ch / cw] * rows
    fig, axes = plt.subplots(
        2 * rows,
        cols,
        squeeze=False,
        layout="constrained",
        figsize=(size * cols, size * sum(ratios) + 0.55 * rows),
        gridspec_kw={"height_ratios": ratios},
    )
    for ax in axes.flat:
        ax.axis("off")
    below = []
    for k, (img, c, title, (y0, _, x0, _)) in enumerate(
        zip(imgs, crops, titles, boxes, strict=True)
    ):
        top, bottom = axes[2 * (k // cols), k % cols], axes[2 * (k // cols) + 1, k % cols]
        top.imshow(img, interpolation="nearest")
        top.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), cw, ch, fill=False, ec="yellow", lw=1.5))
        top.set_title(title, fontsize=9)
        bottom.imshow(c, interpolation="nearest")
        below.append(bottom)
    fig.canvas.draw()  # lays the panels out: their drawn widths give the magnification
    for ax in below:
        shown = ax.get_window_extent().width / fig.dpi * SAVE_DPI / cw
        ax.set_title(f"{cw}x{ch} px at {shown:.1f}x", fontsize=8)
    return fig


def one_to_one(size: float = 3.0) -> int:
    """The crop side that `zoom_grid` panels of `size` inches draw at about one image pixel per
    figure pixel (saved at SAVE_DPI, less the panel's margins)."""
    return int(size * SAVE_DPI * 0.95)


def zoom_side(shape: tuple[int, ...], zoom: float, size: float = 3.0) -> int:
    """The side of `zoom_grid`'s crops of an image of `shape` (H, W, ...): one panel width,
    drawn 1:1, where the short side exceeds it; else `zoom` of the short side, enlarged."""
    short, one = min(shape[:2]), one_to_one(size)
    return one if short > one else max(8, round(zoom * short))


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
        ax.text(
            0.5,
            0.5,
            f"{metric}: {missing}",
            transform=ax.transAxes,
            ha="center",
            va="center",
            wrap=True,
            fontsize=9,
        )
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def forest_plot(results: Sequence, metric: str, unit: str = "", title: str = "") -> Figure:
    """Each variant's paired difference to `full` (glsgn.stats results of one task and
    metric): the mean, its Holm-level 95% interval, and the band of `full`'s own seed range
    around 0. Filled marks hold; hollow ones are not shown."""
    rows = [r for r in results if r.metric == metric]
    fig, ax = plt.subplots(figsize=(9.0, 0.45 * len(rows) + 1.4))
    ys = np.arange(len(rows))[::-1]
    spread = max((r.spread for r in rows if np.isfinite(r.spread)), default=0.0)
    if spread:
        ax.axvspan(-spread, spread, color="0.9", label="full's seed range")
    ax.axvline(0, color="0.4", lw=0.8)
    for y, r in zip(ys, rows, strict=True):
        colour = "tab:blue" if r.holds else "0.35"
        ax.plot([r.low, r.high], [y, y], color=colour, lw=1.6)
        ax.plot(r.mean, y, "o", color=colour, mfc=colour if r.holds else "white", ms=6)
        ax.text(
            1.02,
            y,
            f"{r.verdict}  ({r.n_seeds} seeds x {r.n_images} images)",
            transform=ax.get_yaxis_transform(),
            va="center",
            fontsize=7,
        )
    ax.set_yticks(ys, [r.variant for r in rows])
    ax.set_xlabel(f"{metric.upper()} difference to full" + (f" ({unit})" if unit else ""))
    if spread:
        ax.legend(loc="lower left", fontsize=7, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.subplots_adjust(right=0.62)  # room for the verdicts
    return fig


def curve_grid(
    panels: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]],
    xlabel: str,
    ylabel: str | dict[str, str] = "",
    cols: int = 3,
    logx: bool = False,
    logy: bool | set[str] = False,
    highlight: str | None = None,
    xticks: dict[float, str] | None = None,
    notes: dict[str, str] | None = None,
) -> Figure:
    """Small multiples: one panel per title, one line per label (the same colour in every
    panel, `highlight` drawn black and thicker) and one legend for all. `logy` may name the
    panels to draw on a log scale; `notes` adds a line of text under a panel's curves."""
    labels = list(dict.fromkeys(k for lines in panels.values() for k in lines))
    style = {
        k: {"color": "black", "lw": 2.2}
        if k == highlight
        else {"color": plt.get_cmap("tab10")(i % 10), "lw": 1.2}
        for i, k in enumerate(labels)
    }
    rows, cols = _grid(len(panels), cols)
    fig, axes = plt.subplots(
        rows, cols, squeeze=False, layout="constrained", figsize=(3.6 * cols, 2.7 * rows + 0.6)
    )
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (title, lines) in zip(axes.flat, panels.items(), strict=False):
        for label, (x, y) in lines.items():
            ax.plot(
                x,
                y,
                marker="o" if len(x) <= 12 else None,
                ms=4,
                label=label,
                zorder=3 if label == highlight else 2,
                **style[label],
            )
        if logx:
            ax.set_xscale("log")
        if logy is True or (isinstance(logy, set) and title in logy):
            ax.set_yscale("log")
            # plain numbers at 1, 2, 5 x 10^k (more within a short range): every panel gets labels
            lo, hi = ax.get_ylim()
            subs = (1.0, 2.0, 5.0) if hi / lo > 10 else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
            ax.yaxis.set_major_locator(LogLocator(subs=subs))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        if xticks:
            ax.set_xticks(list(xticks), list(xticks.values()))
            ax.minorticks_off()
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel.get(title, "") if isinstance(ylabel, dict) else ylabel)
        ax.grid(alpha=0.3)
        if notes and title in notes:
            ax.text(
                0.02, 0.02, notes[title], transform=ax.transAxes, fontsize=7, va="bottom", wrap=True
            )
    handles = [plt.Line2D([], [], label=k, **style[k]) for k in labels]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(len(labels), 5),
        fontsize=8,
        frameon=False,
    )
    return fig


def efficiency_panels(
    results: Sequence[dict],
) -> tuple[dict[str, dict[str, tuple[list[float], list[float]]]], dict[float, str], dict[str, str]]:
    """The benchmark's results as `curve_grid` input: panels "time" and "peak memory", one
    line per model against megapixels, the x tick labels, and a note per panel listing the
    cases that did not run (with the reason)."""
    panels: dict[str, dict[str, tuple[list[float], list[float]]]] = {"time": {}, "peak memory": {}}
    ticks, missing = {}, []
    names = {
        ("glsgn", "stream"): "GLSGN (patch-streamed)",
        ("fullres", "whole"): "fullres (whole image)",
        ("fullres", "stream"): "fullres (patch-streamed)",
    }
    for r in sorted(results, key=lambda r: r.get("height", 0) * r.get("width", 0)):
        label = names.get((r["model"], r.get("mode")), f"{r['model']} ({r.get('mode')})")
        if "error" in r:
            missing.append(f"{label} {r['size']}: {r['error']}")
            continue
        mp = r["height"] * r["width"] / 1e6
        ticks[mp] = f"{r['size']}\n{mp:.1f} MP" if r["size"][0].isdigit() else f"{mp:.2g} MP"
        peak = r.get("peak_cuda_mb", r.get("peak_rss_mb"))
        for panel, value in (("time", r["seconds"]), ("peak memory", peak)):
            xs, ys = panels[panel].setdefault(label, ([], []))
            xs.append(mp)
            ys.append(value)
    notes = {"peak memory": "\n".join(missing)} if missing else {}
    return panels, ticks, notes


def save_figure(fig: Figure, stem: str | Path, dpi: int = SAVE_DPI) -> list[Path]:
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
