"""Ablation statistics on synthetic metrics: a planted effect is found, null contrasts are
rarely called real (per contrast and per Holm family), small or single-seed effects never hold,
unmatched inputs are refused by name, Holm matches a hand computation, results are
deterministic."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from glsgn.stats import (
    Paired,
    Result,
    ablation_table,
    contrast,
    family,
    holm,
    paired_differences,
    plateau,
    records,
    seed_spread,
)

SEEDS, IMAGES = 3, 40


def rows_for(
    rng: np.random.Generator,
    effects: dict[str, float],
    task: str = "reflection",
    n_seeds: int = SEEDS,
    n_images: int = IMAGES,
    noise: float = 0.5,
    seed_sd: float = 0.1,
    shared_seed_sd: float = 0.0,
) -> list[dict]:
    """Rows of `full` and each variant (its planted PSNR effect in dB): image difficulty (SD 2
    dB, shared by all, cancels in pairs), a training-run effect per seed (SD `seed_sd`, own to
    each variant), a seed effect common to all variants of that seed (`shared_seed_sd`, data
    order say, cancels in pairs), per-image noise (SD `noise`). SSIM follows PSNR."""
    base = rng.normal(28, 2, n_images)
    shared = rng.normal(0, shared_seed_sd, n_seeds)
    rows = []
    for variant, effect in {"full": 0.0, **effects}.items():
        run = shared + rng.normal(0, seed_sd, n_seeds)
        psnr = base + effect + run[:, None] + rng.normal(0, noise, (n_seeds, n_images))
        rows += [
            dict(
                task=task,
                variant=variant,
                seed=s,
                image=f"img{i:03d}.png",
                psnr=float(psnr[s, i]),
                ssim=0.9 + 0.01 * float(psnr[s, i] - 28),
            )
            for s in range(n_seeds)
            for i in range(n_images)
        ]
    return rows


def null_family(rng: np.random.Generator, m: int = 5) -> list[Paired]:
    """m variants without any effect against one `full`, as `paired_differences` builds them."""
    base = rng.normal(28, 2, IMAGES)

    def run() -> np.ndarray:
        return base + rng.normal(0, 0.1, (SEEDS, 1)) + rng.normal(0, 0.5, (SEEDS, IMAGES))

    full = run()
    seeds, images = tuple(range(SEEDS)), tuple(f"img{i}" for i in range(IMAGES))
    return [Paired("t", f"v{k}", "psnr", seeds, images, run() - full, full) for k in range(m)]


def test_planted_effect_holds():
    rows = rows_for(np.random.default_rng(0), {"no_pac": 0.5})
    table = ablation_table(rows)
    assert [(r.variant, r.metric) for r in table] == [("no_pac", "psnr"), ("no_pac", "ssim")]
    r = table[0]
    assert 0 < r.low < r.mean < r.high
    assert abs(r.mean - 0.5) < 0.1
    assert r.p_adjusted <= 0.05 and r.spread < abs(r.mean)
    assert r.holds and r.verdict == "holds"
    assert (r.task, r.n_seeds, r.n_images) == ("reflection", SEEDS, IMAGES)


def test_null_contrasts_rarely_excluded_and_holm_controls_the_family():
    """200 families of 5 null contrasts (3 seeds x 40 images, noise SD 0.5 dB, seed SD 0.1)."""
    rng = np.random.default_rng(1)
    n_families, excluded, any_found, any_holds = 200, 0, 0, 0
    for k in range(n_families):
        pairs = null_family(rng)
        for pair in pairs:
            low, high = contrast(pair.diff, seed=k).interval(0.05)
            excluded += low > 0 or high < 0
        results = family(pairs, seed=k)
        for r in results:  # the Holm interval and the adjusted p say the same thing
            assert (r.low > 0 or r.high < 0) == (r.p_adjusted <= 0.05)
        any_found += any(r.p_adjusted <= 0.05 for r in results)
        any_holds += any(r.holds for r in results)
    per_contrast = excluded / (5 * n_families)
    family_wise = any_found / n_families
    print(
        f"per contrast {per_contrast:.3f}, Holm family-wise {family_wise:.3f}, "
        f"holds family-wise {any_holds / n_families:.3f}"
    )
    assert per_contrast <= 0.09
    assert family_wise <= 0.09
    assert any_holds <= any_found


def test_effect_below_seed_spread_does_not_hold():
    """A 0.05 dB effect measured precisely (seed effects shared by the variants cancel in the
    pairs), while `full` alone moves ~0.17 dB between seeds."""
    rows = rows_for(
        np.random.default_rng(2),
        {"no_semantic": 0.05},
        noise=0.05,
        seed_sd=0.0,
        shared_seed_sd=0.1,
    )
    r = ablation_table(rows, metrics=("psnr",))[0]
    assert r.low > 0 and r.p_adjusted <= 0.05  # the interval does exclude 0
    assert abs(r.mean) < r.spread
    assert not r.holds and r.verdict == "not shown"


def test_effect_below_the_platform_spread_does_not_hold():
    """The planted 0.5 dB effect that holds above also has to beat the metric's cross-CPU
    spread: at 0.6 dB it is not shown, for PSNR only, and the row says which bar it met."""
    rows = rows_for(np.random.default_rng(0), {"no_pac": 0.5})
    psnr, ssim = ablation_table(rows, platform={"psnr": 0.6})
    assert psnr.low > 0 and abs(psnr.mean) > psnr.spread  # would hold on seeds alone
    assert not psnr.holds and psnr.verdict == "not shown" and psnr.platform == 0.6
    assert ssim.platform == 0.0 and ssim.holds == ablation_table(rows)[1].holds
    assert ablation_table(rows, platform={"psnr": 0.4})[0].holds


def test_plateau_reads_the_last_quarter_of_the_curve():
    steps = [24, 48, 72, 96, 120, 144, 168, 192]
    rising = [15.0, 16.0, 16.5, 16.8, 17.0, 17.1, 17.2, 17.3]
    # 0.75 x 192 = 144: from step 144 (17.1) to 192 (17.3)
    assert plateau(steps, rising) == (pytest.approx(0.2), 144.0)
    flat = [15.0, 16.0, 16.5, 16.8, 17.0, 17.02, 17.04, 17.05]
    assert plateau(steps, flat)[0] == pytest.approx(0.03)
    falling = [15.0, 16.0, 16.5, 16.8, 17.0, 17.0, 16.9, 16.8]
    assert plateau(steps, falling)[0] == pytest.approx(-0.2)  # past the plateau
    assert plateau([10, 20], [1.0, 2.0]) == (1.0, 10.0)  # the window reaches the first point
    assert plateau([80, 100], [1.0, 1.5]) == (0.5, 80.0)  # none before 75: from the first
    with pytest.raises(ValueError, match="two or more points"):
        plateau([10], [1.0])


def test_one_seed_is_not_shown():
    rows = rows_for(np.random.default_rng(3), {"global_only": -1.0}, n_seeds=1)
    r = ablation_table(rows, metrics=("psnr",))[0]
    assert r.high < 0 and r.n_seeds == 1 and math.isnan(r.spread)
    assert not r.holds and r.verdict == "not shown (one seed)"


def test_null_contrast_is_not_shown():
    rows = rows_for(np.random.default_rng(4), {"no_attention": 0.0})
    for r in ablation_table(rows):
        assert r.low < 0 < r.high and not r.holds and r.verdict == "not shown"


def _small_rows() -> list[dict]:
    return rows_for(np.random.default_rng(5), {"no_pac": 0.3}, n_seeds=2, n_images=4)


def test_missing_pair_is_named():
    rows = [
        r
        for r in _small_rows()
        if not (r["variant"] == "no_pac" and r["seed"] == 1 and r["image"] == "img003.png")
    ]
    with pytest.raises(ValueError, match=r"missing from 'no_pac': \(seed 1, image 'img003.png'\)"):
        paired_differences(rows)


def test_mismatched_images_are_named():
    rows = _small_rows()
    for r in rows:
        if r["variant"] == "no_pac" and r["image"] == "img002.png":
            r["image"] = "other.png"
    with pytest.raises(ValueError, match="variant 'no_pac'") as e:
        paired_differences(rows)
    message = str(e.value)
    assert "missing from 'no_pac': (seed 0, image 'img002.png'), (seed 1, image 'img002.png')" in (
        message
    )
    assert "missing from 'full': (seed 0, image 'other.png')" in message


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda rows: [r for r in rows if r["variant"] != "full"], "no 'full' rows"),
        (lambda rows: rows + rows[:1], "two rows for the same cell"),
        (
            lambda rows: [r for r in rows if r["image"] != "img001.png" or r["seed"] != 0],
            r"not scored on every seed x image, missing \(seed 0, image 'img001.png'\)",
        ),
        (lambda rows: [{k: v for k, v in r.items() if k != "psnr"} for r in rows], "no 'psnr'"),
        (lambda rows: [{**r, "psnr": math.inf} for r in rows], "not a finite number"),
    ],
)
def test_bad_input_is_refused(edit, match):
    with pytest.raises(ValueError, match=match):
        paired_differences(edit(_small_rows()))


def test_holm_hand_computed():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max so far 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    np.testing.assert_allclose(holm([0.02, 0.02, 0.9]), [0.06, 0.06, 0.9])  # ties
    np.testing.assert_allclose(holm([0.3]), [0.3])


def test_family_interval_is_at_the_holm_step_level():
    """One strong contrast among 4 nulls: decided at Holm step 1, its interval is the
    1 - 0.05 / 5 one; Holm stops at step 2, so the others' intervals are at 1 - 0.05 / 4."""
    pairs = null_family(np.random.default_rng(6))
    strong = dataclasses.replace(pairs[0], variant="strong", diff=pairs[0].diff + 1.0)
    results = family([strong, *pairs[1:]])
    expected = [contrast(strong.diff).interval(0.05 / 5)]
    expected += [contrast(p.diff).interval(0.05 / 4) for p in pairs[1:]]
    assert [(r.low, r.high) for r in results] == expected
    assert results[0].p_adjusted <= 0.05 and all(r.p_adjusted > 0.05 for r in results[1:])


def test_interval_and_p_agree():
    rng = np.random.default_rng(7)
    for shift in np.linspace(0, 0.4, 9):
        c = contrast(rng.normal(shift, 0.5, (3, 20)), n_resamples=999)
        for alpha in (0.01, 0.05, 0.1, 0.2):
            low, high = c.interval(alpha)
            assert (low > 0 or high < 0) == (c.p <= alpha)
        assert 2 / 1000 <= c.p <= 1


def test_deterministic_given_the_seed():
    d = np.random.default_rng(8).normal(0.2, 0.5, (3, 40))
    assert contrast(d, seed=3).interval() == contrast(d, seed=3).interval()
    assert contrast(d, seed=3).interval() != contrast(d, seed=4).interval()
    rows = rows_for(np.random.default_rng(9), {"no_pac": 0.3})
    assert ablation_table(rows, seed=5) == ablation_table(rows, seed=5)


def test_table_sorted_by_task_then_variant():
    rng = np.random.default_rng(10)
    rows = rows_for(rng, {"no_pac": 0.2, "global_only": -0.2}, task="reflection")
    rows += rows_for(rng, {"local_only": 0.1}, task="haze")
    rows += rows_for(rng, {}, task="rain")  # `full` only: nothing to compare
    table = ablation_table(rows)
    assert [(r.task, r.variant, r.metric) for r in table] == [
        ("haze", "local_only", "psnr"),
        ("haze", "local_only", "ssim"),
        ("reflection", "global_only", "psnr"),
        ("reflection", "global_only", "ssim"),
        ("reflection", "no_pac", "psnr"),
        ("reflection", "no_pac", "ssim"),
    ]


def test_seed_spread_is_the_range_of_per_seed_means():
    reference = np.array([[1.0, 3.0], [2.0, 2.0], [4.0, 6.0]])  # per-seed means 2, 2, 5
    assert seed_spread(reference) == 3.0
    assert math.isnan(seed_spread(reference[:1]))


def test_records_are_plain_json():
    import json

    r = Result(
        task="t",
        variant="v",
        metric="psnr",
        mean=np.float64(0.5),
        low=0.1,
        high=0.9,
        p_adjusted=0.01,
        holds=np.bool_(True),
        verdict="holds",
        n_seeds=np.int64(3),
        n_images=40,
        p=0.01,
        spread=float("nan"),
    )
    (rec,) = records([r])
    assert rec["spread"] is None and rec["holds"] is True and rec["n_seeds"] == 3
    assert json.loads(json.dumps(rec, allow_nan=False)) == rec
