"""Image-quality metrics from a maintained implementation (scikit-image), used by validation
during training and by evaluation, so the two report the same numbers.

Two conventions (docs/method.md, "Metrics"): `psnr_ssim`, RGB floats in [0, 1] (UHDFour and
this project's learning curves and validation), and `psnr_ssim_y`, the BasicSR family's (UHDformer,
Wave-Mamba, UDR-Mixer): images saved as 8 bits, the BT.601 luma Y, a border cropped.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["psnr", "psnr_ssim", "psnr_ssim_y", "luma", "periodic_peak"]


def _hwc(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().permute(1, 2, 0).numpy()
    return np.asarray(x, np.float64)


def psnr(restored: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> float:
    """PSNR (dB) of an image in [0, 1] ((3, H, W) tensor or (H, W, 3) array), clipped first."""
    return float(
        peak_signal_noise_ratio(_hwc(target), np.clip(_hwc(restored), 0, 1), data_range=1.0)
    )


def psnr_ssim(
    restored: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray
) -> tuple[float, float]:
    """PSNR (dB) and SSIM of images in [0, 1] ((3, H, W) tensors or (H, W, 3) arrays)."""
    r, t = np.clip(_hwc(restored), 0, 1), _hwc(target)
    ssim = structural_similarity(t, r, data_range=1.0, channel_axis=2)
    return psnr(r, t), float(ssim)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma Y in [16, 235] of an RGB image in [0, 255], as float64 (MATLAB's rgb2ycbcr,
    which BasicSR's `bgr2ycbcr(y_only=True)` follows)."""
    rgb = np.asarray(rgb, np.float64)
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966]) / 255.0


def psnr_ssim_y(
    restored: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, crop_border: int = 4
) -> tuple[float, float]:
    """PSNR (dB) and SSIM as the BasicSR family reports them: both images rounded to 8 bits
    (as written to a PNG), their luma Y (`luma`), `crop_border` pixels cut from each side,
    PSNR with a peak of 255 and SSIM with an 11-tap Gaussian window (sigma 1.5) on Y."""
    r, t = (np.round(np.clip(_hwc(x), 0, 1) * 255.0) for x in (restored, target))
    if crop_border:
        r, t = (x[crop_border:-crop_border, crop_border:-crop_border] for x in (r, t))
    if min(r.shape[:2]) < 11:
        raise ValueError(
            f"{_hwc(target).shape[1]}x{_hwc(target).shape[0]} image: too small for SSIM's "
            f"11-px window after a {crop_border}-px border crop"
        )
    yr, yt = luma(r), luma(t)
    ssim = structural_similarity(
        yt, yr, data_range=255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    with np.errstate(divide="ignore"):  # equal images: PSNR is inf, as BasicSR reports it
        return float(peak_signal_noise_ratio(yt, yr, data_range=255.0)), float(ssim)


def periodic_peak(residual: np.ndarray, period: int) -> float:
    """How far a periodic pattern of `period` pixels stands out of an (H, W[, C]) residual
    (restored - target): spectral power at the fundamental 1/period cycle/px, horizontal and
    vertical, over the median power at the same spatial frequency in other directions.

    About 1 for a residual without such a pattern; a checkerboard from learned up-sampling
    (a 2-px pattern per U-Net level, so 2, 4, 8 px at full resolution) gives a large ratio.
    """
    r = np.asarray(residual, np.float64)
    r = r.mean(axis=2) if r.ndim == 3 else r
    h, w = r.shape
    if min(h, w) < 4 * period:
        raise ValueError(f"residual of {w}x{h} px is too small for a {period}-px period")
    window = np.hanning(h)[:, None] * np.hanning(w)[None, :]
    power = np.abs(np.fft.fft2((r - r.mean()) * window)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    f0 = 1.0 / period

    def near(iy: int, ix: int) -> float:  # the window spreads a line over about 3 x 3 bins
        rows, cols = np.arange(iy - 1, iy + 2) % h, np.arange(ix - 1, ix + 2) % w
        return float(np.mean(power[np.ix_(rows, cols)]))

    peak = (near(round(h * f0), 0) + near(0, round(w * f0))) / 2
    radius = np.hypot(fy, fx)
    angle = np.abs(np.arctan2(fy, fx)) % (np.pi / 2)
    ring = (np.abs(radius - f0) < 1.5 / min(h, w)) & (angle > 0.2) & (angle < np.pi / 2 - 0.2)
    # Power of noise is exponentially distributed: its mean is its median / ln 2.
    return float(peak * np.log(2) / max(np.median(power[ring]), 1e-30))
