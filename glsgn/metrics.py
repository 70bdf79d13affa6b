"""Image-quality metrics from a maintained implementation (scikit-image), used by validation
during training and by evaluation, so the two report the same numbers."""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["psnr", "psnr_ssim"]


def _hwc(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().permute(1, 2, 0).numpy()
    return np.asarray(x, np.float64)


def psnr(restored: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> float:
    """PSNR (dB) of an image in [0, 1] ((3, H, W) tensor or (H, W, 3) array), clipped first."""
    return float(
        peak_signal_noise_ratio(_hwc(target), np.clip(_hwc(restored), 0, 1), data_range=1.0)
    )


def psnr_ssim(restored: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and SSIM of (H, W, 3) images in [0, 1]."""
    r, t = np.clip(_hwc(restored), 0, 1), _hwc(target)
    ssim = structural_similarity(t, r, data_range=1.0, channel_axis=2)
    return psnr(r, t), float(ssim)
