"""Which parts of GLSGN matter: paired contrasts of each ablation against `full`, with
bootstrap intervals, a Holm correction per task and a rule for when a difference "holds".

Input: one row per (task, variant, seed, image) with that image's metrics, every variant scored
on the same test images with the same training seeds as the reference variant `full`.

Design, in short (each function's docstring says why):

* Pairing. A variant is compared with `full` image by image and seed by seed (variant - full
  on the same (seed, image)), so the images' own difficulty, by far the largest source of
  variation in PSNR, cancels out.
* Bootstrap. Seeds and images are *crossed* (every seed is scored on every image), so the
  resampling is crossed too: each resample draws seeds with replacement and, independently,
  images with replacement, and takes the mean over that seeds x images sub-grid (Owen's
  "pigeonhole" bootstrap). It carries both sources of uncertainty: another training run (seed)
  and another test set (image). Percentile intervals, p-values from the same resamples.
* Multiplicity. Every (variant, metric) contrast of one task is one Holm family. Each interval
  is widened to the level of the Holm step that decides it, so that "the interval excludes 0"
  and "the Holm-adjusted p <= alpha" are the same statement.
* Holds. A difference holds when its Holm interval excludes 0 and it is larger than `full`'s own
  seed-to-seed spread and than how far the metric moves on another CPU (`platform`,
  evaluate.platform_spread); with one seed the seed spread is unknown and nothing holds.

Only numpy: `scipy.stats.bootstrap` resamples independent observations (or rows jointly), not
two crossed factors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

__all__ = [
    "REFERENCE",
    "METRICS",
    "CONVENTIONS",
    "Paired",
    "Contrast",
    "Result",
    "paired_differences",
    "contrast",
    "holm",
    "seed_spread",
    "verdict",
    "family",
    "ablation_table",
    "records",
    "plateau",
    "PLATEAU_TAIL",
    "PLATEAU_DB",
]

REFERENCE = "full"
# evaluate.metric -> the per-image columns contrasted (glsgn.metrics: the two conventions)
CONVENTIONS = {"rgb": ("psnr", "ssim"), "y": ("psnr_y", "ssim_y")}
METRICS = CONVENTIONS["rgb"]
N_RESAMPLES = 2000


@dataclass(frozen=True)
class Paired:
    """One variant's paired differences to the reference on one task and metric.

    `diff` and `reference` are (n_seeds, n_images) grids indexed by `seeds` x `images`:
    `diff[s, i]` = variant - reference on seed `seeds[s]`, image `images[i]`.
    """

    task: str
    variant: str
    metric: str
    seeds: tuple[int, ...]
    images: tuple[str, ...]
    diff: np.ndarray
    reference: np.ndarray


def _listing(cells: Sequence[tuple[int, str]], limit: int = 5) -> str:
    shown = ", ".join(f"(seed {s}, image {i!r})" for s, i in cells[:limit])
    return shown + (f" and {len(cells) - limit} more" if len(cells) > limit else "")


def _collect(
    rows: Iterable[Mapping[str, Any]], metric: str
) -> dict[tuple[str, str], dict[tuple[int, str], float]]:
    cells: dict[tuple[str, str], dict[tuple[int, str], float]] = {}
    for row in rows:
        try:
            key = (str(row["task"]), str(row["variant"]))
            cell = (int(row["seed"]), str(row["image"]))
            value = float(row[metric])
        except KeyError as e:
            raise ValueError(f"row {dict(row)!r} has no {e.args[0]!r}") from None
        where = f"task {key[0]!r}, variant {key[1]!r}, seed {cell[0]}, image {cell[1]!r}"
        if not math.isfinite(value):
            raise ValueError(f"{where}: {metric} is {value}, not a finite number")
        if cell in cells.setdefault(key, {}):
            raise ValueError(f"{where}: two rows for the same cell")
        cells[key][cell] = value
    return cells


def _grid(values: Mapping[tuple[int, str], float], seeds: list[int], images: list[str]):
    return np.array([[values[(s, i)] for i in images] for s in seeds], dtype=np.float64)


def paired_differences(
    rows: Iterable[Mapping[str, Any]], metric: str = "psnr", reference: str = REFERENCE
) -> list[Paired]:
    """Per task and variant, the grid of variant - reference on each (seed, image).

    Why: a paired difference removes each image's difficulty (and, seed by seed, the shared
    training conditions) from the comparison; only matched pairs make that valid, so any
    (seed, image) present on one side and not the other is an error, not something to drop
    silently. The reference must be scored on every seed x image (a full grid) because the
    bootstrap resamples seeds and images as crossed factors.

    `rows`: mappings with keys task, variant, seed, image and `metric`. Returns one `Paired`
    per non-reference (task, variant), sorted by task then variant. Raises ValueError naming
    the task, variant and missing (seed, image) pairs, duplicates or non-finite values.
    """
    cells = _collect(rows, metric)
    out = []
    for (task, variant), values in sorted(cells.items()):
        if variant == reference:
            continue
        ref = cells.get((task, reference))
        if ref is None:
            raise ValueError(
                f"task {task!r}: no {reference!r} rows to pair variant {variant!r} with"
            )
        no_ref = sorted(values.keys() - ref.keys())
        no_variant = sorted(ref.keys() - values.keys())
        if no_ref or no_variant:
            problems = []
            if no_variant:
                problems.append(f"missing from {variant!r}: {_listing(no_variant)}")
            if no_ref:
                problems.append(f"missing from {reference!r}: {_listing(no_ref)}")
            raise ValueError(
                f"task {task!r}, variant {variant!r}: (seed, image) pairs do not match "
                f"{reference!r}; " + "; ".join(problems)
            )
        seeds = sorted({s for s, _ in ref})
        images = sorted({i for _, i in ref})
        holes = [(s, i) for s in seeds for i in images if (s, i) not in ref]
        if holes:
            raise ValueError(
                f"task {task!r}: {reference!r} is not scored on every seed x image, "
                f"missing {_listing(holes)}"
            )
        full = _grid(ref, seeds, images)
        diff = _grid(values, seeds, images) - full
        out.append(Paired(task, variant, metric, tuple(seeds), tuple(images), diff, full))
    return out


@dataclass(frozen=True)
class Contrast:
    """A paired mean difference and its bootstrap distribution (`boot`, sorted)."""

    mean: float
    boot: np.ndarray

    @property
    def p(self) -> float:
        """Two-sided bootstrap p-value: twice the share of resampled means on the far side of
        0 (ties count as far), add-one so it is never below 2 / (B + 1)."""
        b = self.boot.size
        far = min(np.count_nonzero(self.boot <= 0), np.count_nonzero(self.boot >= 0))
        return min(1.0, 2 * (far + 1) / (b + 1))

    def interval(self, alpha: float = 0.05) -> tuple[float, float]:
        """Percentile interval at level 1 - alpha: the k-th smallest and k-th largest resampled
        means, k = floor(alpha (B + 1) / 2).

        Why this order statistic: with it the interval excludes 0 exactly when `p` <= alpha,
        so an interval and a p-value from the same resamples never disagree. When k is 0 (too
        few resamples for that level) the interval is unbounded.
        """
        k = math.floor(alpha * (self.boot.size + 1) / 2 + 1e-9)
        if k < 1:
            return -math.inf, math.inf
        return float(self.boot[k - 1]), float(self.boot[-k])


def _counts(rng: np.random.Generator, n: int, n_resamples: int) -> np.ndarray:
    """(n_resamples, n): how often each of n items is drawn, n draws with replacement."""
    draws = rng.integers(0, n, size=(n_resamples, n)) + n * np.arange(n_resamples)[:, None]
    return np.bincount(draws.ravel(), minlength=n_resamples * n).reshape(n_resamples, n)


def contrast(diff: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0) -> Contrast:
    """Mean of a (n_seeds, n_images) grid of paired differences and its crossed bootstrap.

    Why crossed (seeds and images resampled independently, the mean taken over the drawn
    seeds x drawn images): the claim is about the variant, not about these particular training
    runs or these particular test images, so both must be resampled. They are crossed, not
    nested: image i is the same picture under every seed, so an image on which the ablation
    does especially badly does so under all seeds. Resampling (seed, image) cells, or images
    within each seed, treats those repeats as independent: in a simulation with 3 seeds x 40
    images and an image x variant effect of SD 0.8 dB, their null intervals excluded 0 in 21 %
    and 14 % of draws, the crossed ones in 3 %.

    Limits: the crossed bootstrap over-counts the per-cell noise (conservative when it
    dominates) and, like any bootstrap over 3 seeds, under-states the seed-to-seed variance
    when that dominates the uncertainty of the mean (seed SD 0.2 dB vs 0.5 dB noise over 40
    images: 13 % of null intervals exclude 0). The seed-spread condition of `verdict` is the
    guard there; more seeds are the cure.

    Vectorised: resample r's mean is w_s^T D w_i / (S I) with w_s, w_i the multinomial counts
    of each seed and image drawn. Deterministic given `seed`.
    """
    d = np.asarray(diff, dtype=np.float64)
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f"diff must be a non-empty (n_seeds, n_images) grid, got {d.shape}")
    n_seeds, n_images = d.shape
    rng = np.random.default_rng(seed)
    w_seed = _counts(rng, n_seeds, n_resamples)
    w_image = _counts(rng, n_images, n_resamples)
    boot = ((w_seed @ d) * w_image).sum(axis=1) / d.size
    return Contrast(float(d.mean()), np.sort(boot))


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values, in the order given.

    Why Holm: an ablation table asks many questions at once (one per variant and metric), so
    some differences would look real by chance; Holm controls the chance of any false finding
    in the family at alpha, is never less powerful than Bonferroni and needs no assumption on
    how the contrasts depend on each other (they share `full`, so they do).
    """
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


def _holm_alphas(p: np.ndarray, alpha: float) -> np.ndarray:
    """Per contrast, the level alpha / (m - j) of the Holm step j that decides it: its own
    step if Holm gets there, otherwise the step where Holm stopped (it then stays there)."""
    m = p.size
    order = np.argsort(p, kind="stable")
    steps = np.arange(m)
    rejected = np.minimum(1.0, (m - steps) * p[order]) <= alpha
    stop = m if rejected.all() else int(np.argmin(rejected))
    out = np.empty(m)
    out[order] = alpha / (m - np.minimum(steps, stop))
    return out


def seed_spread(reference: np.ndarray) -> float:
    """How much `full` itself moves between training seeds: the range (max - min) over seeds
    of its mean metric over the images. NaN with one seed.

    Why: a difference smaller than what retraining the same network with another seed does to
    it is not evidence that a component matters, however many images narrow its interval. The
    range is the plainest reading of "the seeds disagree by this much"; with 3 seeds it is
    about 1.7 seed SDs.
    """
    per_seed = np.asarray(reference, dtype=np.float64).mean(axis=1)
    return float(np.ptp(per_seed)) if per_seed.size > 1 else math.nan


def verdict(
    mean: float, low: float, high: float, spread: float, n_seeds: int, platform: float = 0.0
) -> str:
    """The verdict text: "holds", "not shown" or "not shown (one seed)".

    Why two conditions: the (Holm) interval excluding 0 says the difference is unlikely to be
    resampling noise; exceeding `full`'s seed spread says it is larger than a retrain moves the
    result. With one seed the second cannot be checked, so nothing can hold. `platform`, how
    far one run's metric moves on another CPU (other kernels, fp32 where this one ran bf16),
    raises the bar the same way: a retrain elsewhere is another draw of the rounding, and a
    difference it could undo is not one a reader on another machine would reproduce.
    """
    if n_seeds < 2:
        return "not shown (one seed)"
    excludes_zero = low > 0 or high < 0
    return "holds" if excludes_zero and abs(mean) > max(spread, platform) else "not shown"


@dataclass(frozen=True)
class Result:
    """One row of the ablation table. `low`, `high`: the interval at the Holm level of the
    contrast (see `family`); `p`: unadjusted; `spread`: `full`'s seed range (`seed_spread`);
    `platform`: the metric's cross-CPU spread the verdict also had to exceed (`verdict`)."""

    task: str
    variant: str
    metric: str
    mean: float
    low: float
    high: float
    p_adjusted: float
    holds: bool
    verdict: str
    n_seeds: int
    n_images: int
    p: float
    spread: float
    platform: float = 0.0


def family(
    pairs: Sequence[Paired],
    alpha: float = 0.05,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    platform: Mapping[str, float] | None = None,
) -> list[Result]:
    """Contrasts of `pairs` (one Holm family, e.g. all of one task), Holm-corrected together.

    Holm handling: p-values are Holm-adjusted, and each interval is the percentile interval at
    level 1 - alpha / (m - j), the Holm step j that decides the contrast (or the step where Holm
    stopped, for those after it). So a reported interval excludes 0 exactly when p_adjusted <=
    alpha, and a reader can check the verdict from the interval alone. Each contrast uses the
    same bootstrap `seed`, so its resamples do not depend on which other variants are present.
    `platform`: each metric's cross-CPU spread ({"psnr": dB, ...}, see `verdict`).
    """
    platform = platform or {}
    contrasts = [contrast(pair.diff, n_resamples, seed) for pair in pairs]
    p = np.array([c.p for c in contrasts])
    adjusted = holm(p)
    alphas = _holm_alphas(p, alpha)
    out = []
    for pair, c, p_j, p_adj, a in zip(pairs, contrasts, p, adjusted, alphas, strict=True):
        low, high = c.interval(a)
        spread = seed_spread(pair.reference)
        n_seeds, n_images = pair.diff.shape
        floor = float(platform.get(pair.metric, 0.0))
        text = verdict(c.mean, low, high, spread, n_seeds, floor)
        out.append(
            Result(
                pair.task,
                pair.variant,
                pair.metric,
                c.mean,
                low,
                high,
                float(p_adj),
                text == "holds",
                text,
                n_seeds,
                n_images,
                float(p_j),
                spread,
                floor,
            )
        )
    return out


def ablation_table(
    rows: Iterable[Mapping[str, Any]],
    metrics: Sequence[str] = METRICS,
    reference: str = REFERENCE,
    alpha: float = 0.05,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    platform: Mapping[str, float] | None = None,
) -> list[Result]:
    """Every variant against `reference`, for each metric, sorted by task, variant, metric;
    `platform` as `family`.

    Why one Holm family per task holding every variant and every metric: each cell of the
    table is a claim a reader may quote, so the family-wise guarantee covers all claims made
    about a task (PSNR and SSIM included); tasks are separate questions with separate models.
    Pass metrics=("psnr",) for a PSNR-only family.
    """
    rows = list(rows)
    pairs = [p for metric in metrics for p in paired_differences(rows, metric, reference)]
    results = []
    for task in sorted({p.task for p in pairs}):
        task_pairs = [p for p in pairs if p.task == task]
        results += family(task_pairs, alpha, n_resamples, seed, platform)
    rank = {m: k for k, m in enumerate(metrics)}
    return sorted(results, key=lambda r: (r.task, r.variant, rank[r.metric]))


def records(results: Sequence[Result]) -> list[dict[str, Any]]:
    """Results as plain JSON-safe dicts (a non-finite number, such as the seed spread of one
    seed, becomes None): the table the pipeline writes for `dvc metrics show`."""

    def plain(v: Any) -> Any:
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return float(v) if np.isfinite(v) else None
        return v

    return [{f.name: plain(getattr(r, f.name)) for f in fields(r)} for r in results]


PLATEAU_TAIL = 0.25  # the last quarter of training
PLATEAU_DB = 0.05


def plateau(
    steps: Sequence[float], values: Sequence[float], tail: float = PLATEAU_TAIL
) -> tuple[float, float]:
    """(gain, since): how much a validation curve rose over the last `tail` of its steps,
    from the last point at or before step (1 - tail) x the final step to the final point.

    A run is at its plateau when the gain is below PLATEAU_DB (0.05 dB): training a quarter
    longer again would, at that rate, move it less than the seeds do. A falling curve (a
    negative gain) is past it, overfitting. Reading the latest point before the window, not
    the first inside it, makes the window at least `tail` long.
    """
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if steps.size < 2:
        raise ValueError(f"a plateau needs two or more points of the curve, got {steps.size}")
    start = (1 - tail) * steps[-1]
    i = int(np.flatnonzero(steps <= start)[-1]) if (steps <= start).any() else 0
    return float(values[-1] - values[i]), float(steps[i])
