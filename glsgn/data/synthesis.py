"""Degradation synthesis: reflection, rain streaks, haze, low light, and the registry of them.

A degradation is registered by name with `@degradation(NAME, Settings)`: a function
`fn(clean: Clean, seed, settings) -> Degraded` and the section its settings are validated by
(`data.degradations.NAME` in params.yaml). A task of `data.tasks` synthesises one of them.

Each function is deterministic from its seed. Its pixel sizes are given at
`data.reference_size` and scaled by `scale` (long side / reference_size), so a 4K pair looks
like a 1K pair, only sharper. Each returns the degraded image, the clean target, the
degradation layer (degraded - clean) and the parameters it drew, for the manifest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import cv2
import numpy as np
from pydantic import Field, model_validator

from ..sections import Float, Int, Range, ordered, section

__all__ = [
    "Clean",
    "DEGRADATIONS",
    "Degradation",
    "Degraded",
    "degradation",
    "reflection",
    "rain",
    "haze",
    "lowlight",
    "smooth_depth",
    "streak_kernel",
]


# --- each degradation's settings: data.degradations.NAME in params.yaml ------------------------


@section("data.degradations.reflection")
class ReflectionConfig:
    """Reflection synthesis after Zhang et al. 2018 / ERRNet; pixels at data.reference_size."""

    sigma: Range(0.0, 100.0) = (1.0, 5.0)  # Gaussian blur of the reflection layer
    strength: Range(0.0, 1.0) = (0.4, 1.0)  # scale of the reflection layer

    _check = model_validator(mode="after")(ordered)


@section("data.degradations.rain")
class RainConfig:
    """Rain streak layers, motion-blurred; pixels and densities at data.reference_size."""

    layers: Range(1, 16, Int) = (2, 4)  # number of streak layers
    density: Range(0.0, 1e5) = (150.0, 600.0)  # streaks per megapixel of the reference-size image
    length: Range(1.0, 1000.0) = (15.0, 45.0)  # streak length, pixels
    width: Range(0.25, 50.0) = (1.0, 2.5)  # streak width, pixels
    angle: Range(-80.0, 80.0) = (-20.0, 20.0)  # degrees from vertical, clockwise
    jitter: Annotated[Float, Field(ge=0, le=45)] = 3.0  # angle spread between layers, degrees
    brightness: Range(0.0, 1.0) = (0.25, 0.6)

    _check = model_validator(mode="after")(ordered)


@section("data.degradations.haze")
class HazeConfig:
    """Atmospheric scattering I = J t + A (1 - t), t = exp(-beta d), depth d in [0, 1]."""

    beta: Range(0.0, 10.0) = (0.8, 2.5)  # scattering coefficient
    airlight: Range(0.0, 1.0) = (0.7, 1.0)  # atmospheric light A
    tint: Annotated[Float, Field(ge=0, le=0.5)] = 0.05  # per-channel spread of A around grey

    _check = model_validator(mode="after")(ordered)


@section("data.degradations.lowlight")
class LowLightConfig:
    """Under-exposure: I = k J^gamma + noise, noise variance read^2 + shot * k J^gamma."""

    exposure: Range(0.001, 1.0) = (0.05, 0.3)  # k
    gamma: Range(0.2, 5.0) = (1.0, 2.0)
    read_noise: Range(0.0, 0.2) = (0.0, 0.02)  # standard deviation, in [0, 1] units
    shot_noise: Range(0.0, 0.1) = (0.0, 0.01)  # variance per unit of signal

    _check = model_validator(mode="after")(ordered)


@dataclass
class Degraded:
    degraded: np.ndarray  # (H, W, 3) float32 in [0, 1]
    clean: np.ndarray  # (H, W, 3) float32 in [0, 1]
    layer: np.ndarray  # degraded - clean: the reflection, the rain, the haze
    params: dict = field(default_factory=dict)


@dataclass
class Clean:
    """A clean image to degrade, and what a degradation may need besides its pixels."""

    image: np.ndarray  # (H, W, 3) float32 in [0, 1]
    depth: np.ndarray | None  # (H, W) in [0, 1], 1 farthest (dead leaves), None (photographs)
    scale: float  # pixels of this image per pixel at data.reference_size
    source: str  # where it came from, for the manifest
    other: Callable[[], Clean]  # another clean image, never from this one's source


@dataclass(frozen=True)
class Degradation:
    fn: Callable[[Clean, int, Any], Degraded]
    settings: type | None  # its section of data.degradations (None: it has no settings)


DEGRADATIONS: dict[str, Degradation] = {}


def degradation(name: str, settings: type | None = None):
    """Register the decorated `fn(clean, seed, settings) -> Degraded` as degradation `name`,
    its settings validated by `settings` (a glsgn.config section) from data.degradations."""

    def register(fn: Callable[[Clean, int, Any], Degraded]):
        DEGRADATIONS[name] = Degradation(fn, settings)
        return fn

    return register


def _check(img: np.ndarray, name: str) -> np.ndarray:
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name}: expected an (H, W, 3) image, got shape {img.shape}")
    return np.asarray(img, np.float32)


def _uniform(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1]))


def reflection(
    clean: np.ndarray, reflected: np.ndarray, seed: int, cfg: ReflectionConfig, scale: float = 1.0
) -> Degraded:
    """Background `clean` seen through glass that reflects `reflected` (Zhang et al. 2018).

    The reflection is out of focus (Gaussian blur, sigma from `cfg.sigma`), scaled by a
    strength, and added; where the sum overflows, the mean excess is taken off the
    reflection (their overflow rule), so I = T + R' with R' >= 0: a reflection only adds light.
    """
    t = _check(clean, "clean")
    r = _check(reflected, "reflected")
    if r.shape != t.shape:
        r = cv2.resize(r, (t.shape[1], t.shape[0]), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    sigma = _uniform(rng, cfg.sigma) * scale
    strength = _uniform(rng, cfg.strength)
    r_blur = cv2.GaussianBlur(r, (0, 0), sigmaX=max(sigma, 1e-3)) * np.float32(strength)
    blend = t + r_blur
    over = blend > 1
    if over.any():
        excess = np.where(over, blend - 1, 0).sum((0, 1)) / np.maximum(over.sum((0, 1)), 1)
        r_blur = np.clip(r_blur - 1.3 * excess.astype(np.float32), 0, 1)
    degraded = np.clip(t + r_blur, 0, 1)
    return Degraded(degraded, t, degraded - t, {"sigma": sigma, "strength": strength})


def streak_kernel(length: float, width: float, angle: float) -> np.ndarray:
    """A motion-blurred rain streak: a line of `length` x `width` pixels at `angle` degrees
    from vertical (clockwise), anti-aliased, peak 1. Drawn 8x larger, then area-reduced."""
    ss = 8
    half = int(math.ceil(length / 2 + width + 2))
    size = 2 * half + 1
    big = np.zeros((size * ss, size * ss), np.float32)
    a = math.radians(angle)
    dx, dy = math.sin(a) * length / 2, math.cos(a) * length / 2
    c = size * ss / 2
    p0 = (round((c - dx * ss) * 16), round((c - dy * ss) * 16))
    p1 = (round((c + dx * ss) * 16), round((c + dy * ss) * 16))
    cv2.line(big, p0, p1, 1.0, max(1, round(width * ss)), cv2.LINE_AA, 4)
    k = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
    return k / max(float(k.max()), 1e-6)


def _wrap_filter(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate with `kernel`, the image wrapping around at its edges (streaks that leave at
    one side come back at the other). Padding by hand: OpenCV refuses BORDER_WRAP on some
    image and kernel sizes."""
    ph, pw = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(img, ((ph, ph), (pw, pw)), mode="wrap")
    out = cv2.filter2D(padded, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    return out[ph : ph + img.shape[0], pw : pw + img.shape[1]]


def rain(clean: np.ndarray, seed: int, cfg: RainConfig, scale: float = 1.0) -> Degraded:
    """Several layers of rain streaks over `clean`, screen-blended: I = 1 - (1 - J)(1 - S).

    Each layer: random drops (count per megapixel of the reference-size image), convolved
    with one streak kernel (length, width scale with the image; angle near the scene's).
    """
    j = _check(clean, "clean")
    h, w = j.shape[:2]
    rng = np.random.default_rng(seed)
    n_layers = int(rng.integers(cfg.layers[0], cfg.layers[1] + 1))
    base_angle = _uniform(rng, cfg.angle)
    keep = np.ones((h, w), np.float32)  # product of (1 - S_l)
    layers = []
    for _ in range(n_layers):
        angle = base_angle + float(rng.uniform(-cfg.jitter, cfg.jitter))
        length = _uniform(rng, cfg.length) * scale
        width = _uniform(rng, cfg.width) * scale
        bright = _uniform(rng, cfg.brightness)
        count = int(_uniform(rng, cfg.density) * (h * w / 1e6) / scale**2)
        drops = np.zeros((h, w), np.float32)
        ys, xs = rng.integers(0, h, count), rng.integers(0, w, count)
        drops[ys, xs] = bright * rng.uniform(0.5, 1.0, count).astype(np.float32)
        s = _wrap_filter(drops, streak_kernel(length, width, angle))
        keep *= 1 - np.clip(s, 0, 1)
        layers.append(
            {
                "angle": angle,
                "length": length,
                "width": width,
                "brightness": bright,
                "streaks": count,
            }
        )
    streaks = (1 - keep)[..., None]
    degraded = j + streaks * (1 - j)
    return Degraded(degraded, j, degraded - j, {"angle": base_angle, "layers": layers})


def smooth_depth(h: int, w: int, seed: int) -> np.ndarray:
    """A depth prior for photographs, which have none: a smooth random field of random scale
    (a grid of 2-8 random values across the long side, bicubically interpolated) plus a ramp
    of random direction and weight. In [0, 1], 1 = farthest.

    No place in the frame is farther on average (a fixed "farther towards the top" would be a
    position cue that rewards any model with a global view for knowing where it is)."""
    rng = np.random.default_rng(seed)
    cells = int(rng.integers(2, 9))
    gh, gw = (max(2, round(cells * n / max(h, w))) for n in (h, w))
    field = cv2.resize(
        rng.random((gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (xx - w / 2) * np.cos(theta) + (yy - h / 2) * np.sin(theta)
    ramp /= max(float(np.abs(ramp).max()), 1e-6)
    weight = rng.uniform(0.0, 0.7)
    d = weight * ramp + (1 - weight) * field
    d -= d.min()
    return (d / max(float(d.max()), 1e-6)).astype(np.float32)


def haze(
    clean: np.ndarray, seed: int, cfg: HazeConfig, depth: np.ndarray | None = None
) -> Degraded:
    """Atmospheric scattering: I = J t + A (1 - t), t = exp(-beta d), d in [0, 1].

    `depth` is the scene's (dead leaves: occlusion order); photographs get `smooth_depth`.
    """
    j = _check(clean, "clean")
    h, w = j.shape[:2]
    rng = np.random.default_rng(seed)
    if depth is None:
        depth = smooth_depth(h, w, seed)
    if depth.shape != (h, w):
        raise ValueError(f"depth: expected shape {(h, w)}, got {depth.shape}")
    beta = _uniform(rng, cfg.beta)
    a = _uniform(rng, cfg.airlight) + rng.uniform(-cfg.tint, cfg.tint, 3)
    a = np.clip(a, 0, 1).astype(np.float32)
    t = np.exp(-beta * np.clip(depth, 0, 1)).astype(np.float32)[..., None]
    degraded = j * t + a * (1 - t)
    return Degraded(
        degraded, j, degraded - j, {"beta": beta, "airlight": a.tolist(), "t_min": float(t.min())}
    )


def lowlight(clean: np.ndarray, seed: int, cfg: LowLightConfig) -> Degraded:
    """Under-exposure: I = k J^gamma + n, n ~ N(0, read^2 + shot k J^gamma), clipped to [0, 1].

    A darker exposure (k), a gamma that crushes the shadows, and the sensor noise a short
    exposure brings (signal-dependent shot noise and read noise)."""
    j = _check(clean, "clean")
    rng = np.random.default_rng(seed)
    k, gamma = _uniform(rng, cfg.exposure), _uniform(rng, cfg.gamma)
    read, shot = _uniform(rng, cfg.read_noise), _uniform(rng, cfg.shot_noise)
    signal = k * np.power(j, gamma, dtype=np.float32)
    sd = np.sqrt(read**2 + shot * signal)
    noise = rng.standard_normal(j.shape, dtype=np.float32) * sd
    degraded = np.clip(signal + noise, 0, 1).astype(np.float32)
    params = {"exposure": k, "gamma": gamma, "read_noise": read, "shot_noise": shot}
    return Degraded(degraded, j, degraded - j, params)


# --- the registry: each degradation as a task synthesises it ----------------------------------


@degradation("reflection", ReflectionConfig)
def _reflection(c: Clean, seed: int, cfg: ReflectionConfig) -> Degraded:
    other = c.other()  # the reflected scene is never the background's own source image
    d = reflection(c.image, other.image, seed, cfg, c.scale)
    d.params["reflected"] = other.source
    return d


@degradation("rain", RainConfig)
def _rain(c: Clean, seed: int, cfg: RainConfig) -> Degraded:
    return rain(c.image, seed, cfg, c.scale)


@degradation("haze", HazeConfig)
def _haze(c: Clean, seed: int, cfg: HazeConfig) -> Degraded:
    return haze(c.image, seed, cfg, c.depth)


@degradation("lowlight", LowLightConfig)
def _lowlight(c: Clean, seed: int, cfg: LowLightConfig) -> Degraded:
    return lowlight(c.image, seed, cfg)
