"""Procedural UHR scenes: the dead-leaves model (Matheron; Lee, Mumford & Huang 2001).

Opaque discs with power-law radii fall on the canvas one after another, each hiding what lies
below. With density ~ r^-3 the image statistics are scale invariant, like natural images, so
a scene has real detail at every resolution down to the pixel. The occlusion order is a depth
map (later leaves are nearer) that the haze synthesis uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..config import ScenesConfig

__all__ = ["Scene", "dead_leaves"]


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) float32 in [0, 1]
    depth: np.ndarray  # (H, W) float32 in [0, 1]: occlusion order, 1 = farthest


def _power_law(rng: np.random.Generator, n: int, lo: float, hi: float, a: float) -> np.ndarray:
    """Radii with density ~ r^-a on [lo, hi], by inverting the CDF."""
    u = rng.random(n)
    e = 1.0 - a
    return (lo**e + u * (hi**e - lo**e)) ** (1.0 / e)


def dead_leaves(h: int, w: int, seed: int, cfg: ScenesConfig | None = None) -> Scene:
    """A dead-leaves scene of h x w pixels, the same bytes for the same seed."""
    cfg = cfg or ScenesConfig()
    rng = np.random.default_rng(seed)
    r_max = max(cfg.r_min, cfg.r_max * min(h, w))
    # E[r^2] under the power law, for the number of leaves that gives the asked coverage.
    grid = np.linspace(cfg.r_min, r_max, 4096)
    pdf = grid**-cfg.exponent
    mean_area = np.pi * np.trapezoid(grid**2 * pdf, grid) / np.trapezoid(pdf, grid)
    n = int(np.ceil(cfg.coverage * h * w / mean_area))
    radii = _power_law(rng, n, cfg.r_min, r_max, cfg.exponent)
    cy = rng.uniform(-0.05 * h, 1.05 * h, n)
    cx = rng.uniform(-0.05 * w, 1.05 * w, n)

    # Paint leaf indices back to front; a pixel keeps the last (nearest) leaf that covers it.
    # cv2 draws in fixed point with 4 fractional bits, so sub-pixel centres and radii survive.
    labels = np.full((h, w), -1, np.int32)
    fixed = zip(
        (cx * 16).astype(int).tolist(),
        (cy * 16).astype(int).tolist(),
        np.maximum(1, (radii * 16).astype(int)).tolist(),
        strict=True,
    )
    for i, (x, y, r) in enumerate(fixed):
        cv2.circle(labels, (x, y), r, i, -1, cv2.LINE_8, 4)

    # Per-leaf appearance: a colour, a linear shading across the leaf, a stripe texture and
    # pixel grain, so leaves are not flat and the finest scale carries detail. Everything is
    # folded into per-leaf coefficients of x and y first: one gather per coefficient.
    hsv = np.stack([rng.uniform(0, 180, n), rng.uniform(0, 160, n), rng.uniform(25, 245, n)], 1)
    color = cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0] / np.float32(255)
    sx, sy = rng.normal(0, 0.25, (2, n)) / radii
    freq = rng.uniform(0.05, 0.8, n)
    theta = rng.uniform(0, np.pi, n)
    coef = np.stack(
        [
            1.0 - sx * cx - sy * cy,  # shading: 1 + sx (x - cx) + sy (y - cy)
            sx,
            sy,
            freq * np.cos(theta),  # stripe phase: fx x + fy y
            freq * np.sin(theta),
            rng.uniform(0, 0.15, n) * (rng.random(n) < 0.5),  # stripe amplitude
            rng.uniform(0, 0.06, n),  # grain amplitude
        ]
    ).astype(np.float32)

    covered = labels >= 0
    lab = np.where(covered, labels, 0)
    c0, cx_, cy_, fx, fy, amp, grain = (c[lab] for c in coef)
    xx = np.arange(w, dtype=np.float32)[None, :]
    yy = np.arange(h, dtype=np.float32)[:, None]
    lum = c0 + cx_ * xx + cy_ * yy + amp * np.sin(fx * xx + fy * yy)
    lum += grain * rng.standard_normal((h, w), dtype=np.float32)
    img = color.astype(np.float32)[lab] * lum[..., None]
    # Uncovered canvas: a soft vertical gradient, the farthest plane.
    sky = np.linspace(0.75, 0.45, h, dtype=np.float32)[:, None, None] * np.array(
        [0.8, 0.9, 1.0], np.float32
    )
    img = np.where(covered[..., None], img, sky)
    # Depth: a leaf's rank in the occlusion order among the leaves that remain visible, so
    # visible depths spread over [0, 1) instead of crowding near the last leaves painted.
    seen = np.zeros(n, bool)
    seen[lab[covered]] = True
    rank_of = (np.cumsum(seen) - 1).astype(np.float32) / max(int(seen.sum()), 1)
    rank = rank_of[lab]
    depth = np.where(covered, 1.0 - rank, 1.0).astype(np.float32)
    return Scene(image=np.clip(img, 0, 1).astype(np.float32), depth=depth)
