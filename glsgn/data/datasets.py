"""Torch datasets over data/prepared/{task}/{split}: whole images, and training crops.

A training sample is what `GLSGN.forward(crop, global_view=..., region=...)` takes: a random
full-resolution crop (or the whole image) for the local pathways, plus the whole image scaled
down for the global pathway, plus where the crop lies. Augmentation (flips, crop position) is
seeded by (seed, epoch, index), so a run is reproducible and a resumed run sees the same samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..model.resample import downscale, pad_to_multiple
from .io import read_image
from .paired import Pair, find_pairs

__all__ = ["PairedImages", "TrainCrops"]


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float()


class PairedImages(Dataset):
    """Whole (input, target) images of one split, for evaluation and figures."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.pairs: list[Pair] = find_pairs("input", "target", base=self.root)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        p = self.pairs[i]
        x, y = read_image(p.input).rgb, read_image(p.target).rgb
        if x.shape != y.shape:
            raise ValueError(f"{p.input}: size {x.shape[:2]} differs from {p.target} {y.shape[:2]}")
        return {"name": p.name, "input": _tensor(x), "target": _tensor(y)}


class TrainCrops(Dataset):
    """Random aligned crops with the whole image's global view (training form of GLSGN).

    Each item: ``input``/``target`` crops (3, c, c); ``input_global``/``target_global``, the
    whole (padded) images scaled down by `global_scale`; ``box`` (y0, y1, x0, x1) of the crop
    and ``size`` (H, W) of the padded image, in full-resolution pixels. Crops and image sizes
    are multiples of `multiple` (the model's `pad_multiple`), so every pathway's grid aligns.
    """

    def __init__(
        self,
        root: str | Path,
        crop: int | None,
        multiple: int,
        global_scale: int,
        seed: int = 0,
        augment: bool = True,
    ) -> None:
        if crop is not None and (crop < multiple or crop % multiple):
            raise ValueError(f"crop: expected null or a multiple of {multiple}, got {crop}")
        self.images = PairedImages(root)
        self.crop, self.multiple, self.global_scale = crop, multiple, global_scale
        self.seed, self.augment, self.epoch = seed, augment, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int | tuple[int, int, int]) -> dict:
        """`key`: an index, or (index, epoch, batch) from the training sampler; the crop
        position is drawn per batch, so that all crops of a batch share one region."""
        i, epoch, batch = key if isinstance(key, tuple) else (key, self.epoch, key)
        rng = np.random.default_rng([self.seed, epoch, i])
        item = self.images[i]
        x, y = item["input"], item["target"]
        if self.augment:
            for dim in (-1, -2):
                if rng.random() < 0.5:
                    x, y = x.flip(dim), y.flip(dim)
        x, _ = pad_to_multiple(x[None], self.multiple)
        y, _ = pad_to_multiple(y[None], self.multiple)
        h, w = x.shape[-2:]
        ch, cw = (h, w) if self.crop is None else (min(self.crop, h), min(self.crop, w))
        pos = np.random.default_rng([self.seed, batch, 1])  # one position per batch
        y0 = int(pos.integers(0, (h - ch) // self.multiple + 1)) * self.multiple
        x0 = int(pos.integers(0, (w - cw) // self.multiple + 1)) * self.multiple
        return {
            "name": item["name"],
            "input": x[0, :, y0 : y0 + ch, x0 : x0 + cw],
            "target": y[0, :, y0 : y0 + ch, x0 : x0 + cw],
            "input_global": downscale(x, self.global_scale)[0],
            "target_global": downscale(y, self.global_scale)[0],
            "box": torch.tensor([y0, y0 + ch, x0, x0 + cw]),
            "size": torch.tensor([h, w]),
        }
