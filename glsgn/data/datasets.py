"""Torch datasets over data/prepared/{task}/{split} (its pairs: `paired.split_pairs`): whole
images, and training crops.

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

from ..model.resample import round_up
from .arrays import (
    DecodedPair,
    PairSource,
    as_float,
    flip_index,
    open_cache,
    read_crop,
    source_index,
)
from .io import read_image
from .paired import Pair, check_pair_size, split_pairs

__all__ = ["PairedImages", "TrainCrops"]


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float()


class PairedImages(Dataset):
    """Whole (input, target) images of one split, for evaluation and figures."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.pairs: list[Pair] = split_pairs(self.root)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        p = self.pairs[i]
        x, y = read_image(p.input).rgb, read_image(p.target).rgb
        check_pair_size(p, x.shape, y.shape)
        return {"name": p.name, "input": _tensor(x), "target": _tensor(y)}


class TrainCrops(Dataset):
    """Random aligned crops with the whole image's global view (training form of GLSGN).

    Each item: ``input``/``target`` crops (3, c, c); ``input_global``/``target_global``, the
    whole (padded) images scaled down by `global_scale`; ``box`` (y0, y1, x0, x1) of the crop
    and ``size`` (H, W) of the padded image, in full-resolution pixels. Crops and image sizes
    are multiples of `multiple` (the model's `pad_multiple`), so every pathway's grid aligns.

    With `cache` a folder, each pair is decoded once, here, into arrays there (see
    `glsgn.data.arrays`), and a sample reads only its crop's rows: UHR training is then not
    bound by PNG decoding. Items are bit-identical with and without the cache.
    """

    def __init__(
        self,
        root: str | Path,
        crop: int | None,
        multiple: int,
        global_scale: int,
        seed: int = 0,
        augment: bool = True,
        cache: str | Path | None = None,
        progress: bool = True,
    ) -> None:
        if crop is not None and (crop < multiple or crop % multiple):
            raise ValueError(f"crop: expected null or a multiple of {multiple}, got {crop}")
        pairs = split_pairs(root)
        self.sources: list[PairSource] = (
            [DecodedPair(p, multiple, global_scale) for p in pairs]
            if cache is None
            else open_cache(pairs, cache, multiple, global_scale, progress)
        )
        self.crop, self.multiple, self.global_scale = crop, multiple, global_scale
        self.seed, self.augment, self.epoch = seed, augment, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, key: int | tuple[int, int, int]) -> dict:
        """`key`: an index, or (index, epoch, batch) from the training sampler; the crop
        position is drawn per batch, so that all crops of a batch share one region.

        The box is drawn in the flipped, padded image's coordinates; only its pixels are read
        (padding replicates, so indices clip; a flip mirrors them), then flipped."""
        i, epoch, batch = key if isinstance(key, tuple) else (key, self.epoch, key)
        rng = np.random.default_rng([self.seed, epoch, i])
        flip_w = self.augment and rng.random() < 0.5
        flip_h = self.augment and rng.random() < 0.5
        src = self.sources[i]
        a = src.arrays(flip_index(flip_w, flip_h))
        m = self.multiple
        sh, sw = a.input.shape[:2]
        h, w = round_up(sh, m), round_up(sw, m)
        ch, cw = (h, w) if self.crop is None else (min(self.crop, h), min(self.crop, w))
        pos = np.random.default_rng([self.seed, batch, 1])  # one position per batch
        y0 = int(pos.integers(0, (h - ch) // m + 1)) * m
        x0 = int(pos.integers(0, (w - cw) // m + 1)) * m
        rows, cols = source_index(y0, ch, sh, flip_h), source_index(x0, cw, sw, flip_w)
        return {
            "name": src.name,
            "input": _tensor(as_float(read_crop(a.input, rows, cols))),
            "target": _tensor(as_float(read_crop(a.target, rows, cols))),
            "input_global": torch.from_numpy(a.input_global),
            "target_global": torch.from_numpy(a.target_global),
            "box": torch.tensor([y0, y0 + ch, x0, x0 + cw]),
            "size": torch.tensor([h, w]),
        }
