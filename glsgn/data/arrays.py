"""The arrays a training crop is cut from: decoded per sample, or decoded once into a cache.

A 4K PNG takes most of a second to decode, so `TrainCrops` can keep each image decoded in a
cache folder as .npy (the exact 8- or 16-bit integers) and read only a crop's rows from a
memory map. The global view of the whole image is stored too, once per flip state, because
flipping an average-pooled image is not bit-identical to pooling the flipped image in float32.

Cache layout (entries are named by the image file's content hash, so a changed image gets a new
entry, and one image used twice is stored once)::

    <cache>/v1/index.json                 (resolved path, size, mtime_ns) -> hash: no re-hashing
    <cache>/v1/pixels/<hash>.npy          (H, W, 3) uint8 or uint16
    <cache>/v1/global-m<M>-s<S>/<hash>.npy (4, 3, H'/S, W'/S) float32, H', W' padded to M

All writes are atomic; an entry that does not load, or has the wrong shape, is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from ..atomic import atomic_write
from ..model.resample import downscale, pad_to_multiple, round_up
from .io import read_image
from .paired import Pair, check_pair_size

__all__ = [
    "PairArrays",
    "PairSource",
    "DecodedPair",
    "CachedPair",
    "open_cache",
    "flip_index",
    "global_view",
    "source_index",
    "read_crop",
    "as_float",
    "cache_size",
]

log = logging.getLogger(__name__)

_VERSION = "v1"  # bump when what read_image returns, or the stored layout, changes


@dataclass(frozen=True)
class PairArrays:
    """One pair as a sample is cut from it: the whole images, and their global views for one
    flip state."""

    input: np.ndarray  # (H, W, 3): float32 in [0, 1], or uint8/uint16 (maybe a memory map)
    target: np.ndarray
    input_global: np.ndarray  # (3, H'/S, W'/S) float32, H', W' padded to the multiple
    target_global: np.ndarray


class PairSource(Protocol):
    """Where a pair's arrays come from: `TrainCrops` has one code path for every source."""

    name: str

    def arrays(self, flip: int) -> PairArrays: ...


def flip_index(flip_w: bool, flip_h: bool) -> int:
    """Which of the four stored global views (0..3) goes with a horizontal/vertical flip."""
    return int(flip_w) + 2 * int(flip_h)


def global_view(rgb: np.ndarray, flip: int, multiple: int, scale: int) -> np.ndarray:
    """The global view of a float32 (H, W, 3) image in flip state `flip`, computed with the
    same torch operations on the same tensor layout as a sample did before caching, so that
    the float32 result is bit-identical (flip, replicate-pad, then average-pool)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float()
    if flip & 1:
        x = x.flip(-1)
    if flip & 2:
        x = x.flip(-2)
    x, _ = pad_to_multiple(x[None], multiple)
    return downscale(x, scale)[0].numpy()


def source_index(start: int, length: int, size: int, flipped: bool) -> np.ndarray:
    """Indices into a stored axis of `size` pixels for positions start..start+length of the
    flipped, then replicate-padded axis: padding clips to the last pixel, flipping mirrors."""
    i = np.minimum(np.arange(start, start + length), size - 1)
    return size - 1 - i if flipped else i


def read_crop(a: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """a[rows][:, cols], reading only the rows and columns they span (a memory map reads no
    more of the file)."""
    r0, c0 = int(rows.min()), int(cols.min())
    block = a[r0 : int(rows.max()) + 1, c0 : int(cols.max()) + 1]
    return block[np.ix_(rows - r0, cols - c0)]


def as_float(a: np.ndarray) -> np.ndarray:
    """Stored integers -> float32 in [0, 1] exactly as `read_image` computes them; float32
    arrays pass unchanged."""
    if a.dtype == np.float32:
        return a
    return a.astype(np.float32) / np.float32(np.iinfo(a.dtype).max)


class DecodedPair:
    """Decodes both images at every sample (no cache): slow on UHR images, nothing on disk."""

    def __init__(self, pair: Pair, multiple: int, scale: int) -> None:
        self.pair, self.name, self.multiple, self.scale = pair, pair.name, multiple, scale

    def arrays(self, flip: int) -> PairArrays:
        x, y = read_image(self.pair.input).rgb, read_image(self.pair.target).rgb
        check_pair_size(self.pair, x.shape, y.shape)
        gx, gy = (global_view(a, flip, self.multiple, self.scale) for a in (x, y))
        return PairArrays(x, y, gx, gy)


@dataclass(frozen=True)
class _Entry:
    """One image's cache files."""

    pixels: Path
    views: Path  # the four global views for one (multiple, scale)


class CachedPair:
    """Memory-maps a pair's cached arrays at each sample; a crop reads only its own rows. Paths,
    not open maps, are kept, so the dataset pickles small for DataLoader workers."""

    def __init__(self, name: str, input: _Entry, target: _Entry) -> None:
        self.name, self.input, self.target = name, input, target

    def arrays(self, flip: int) -> PairArrays:
        x, y = (np.load(e.pixels, mmap_mode="r") for e in (self.input, self.target))
        gx, gy = (
            np.array(np.load(e.views, mmap_mode="r")[flip]) for e in (self.input, self.target)
        )
        return PairArrays(x, y, gx, gy)


def _to_integers(rgb: np.ndarray, bits: int, path: Path) -> np.ndarray:
    a = np.round(rgb * np.float32(2**bits - 1)).astype(np.uint8 if bits == 8 else np.uint16)
    if not np.array_equal(as_float(a), rgb):  # read_image divides integers: always exact
        raise ValueError(f"{path}: decoded values are not {bits}-bit integers / {2**bits - 1}")
    return a


def _load(path: Path, shape: tuple[int, ...] | None, dtypes: tuple[type, ...]) -> np.ndarray | None:
    """A cached array, or None when it is missing, unreadable (truncated, corrupt) or not the
    expected shape and dtype: the caller rebuilds it."""
    try:
        a = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return None
    ok = a.dtype in dtypes and (a.shape == shape if shape else a.ndim == 3 and a.shape[2] == 3)
    return a if ok else None


def _save(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        np.save(f, a)


def _file_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class _Index:
    """(resolved path, size, mtime_ns) -> content hash, kept in a small JSON file, so that a
    second run hashes nothing; an unreadable index is only a slower start."""

    def __init__(self, path: Path) -> None:
        self.path, self.changed = path, False
        try:
            self.entries: dict[str, list] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def hash(self, file: Path) -> str:
        file = file.resolve()
        st = file.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        old = self.entries.get(str(file))
        if isinstance(old, list) and old[:2] == stamp:
            return old[2]
        digest = _file_hash(file)
        self.entries[str(file)] = [*stamp, digest]
        self.changed = True
        return digest

    def save(self) -> None:
        if self.changed:
            with atomic_write(self.path) as f:
                f.write(json.dumps(self.entries, indent=0, sort_keys=True).encode())


def _view_shape(hw: tuple[int, ...], multiple: int, scale: int) -> tuple[int, ...]:
    h, w = (round_up(s, multiple) for s in hw[:2])
    return (4, 3, h // scale, w // scale)


def _ensure(
    path: Path, index: _Index, multiple: int, scale: int, folder: Path
) -> tuple[_Entry, bool]:
    """Make the cache entry of one image whole; -> (entry, whether the image was decoded)."""
    digest = index.hash(path)
    entry = _Entry(
        folder / "pixels" / f"{digest}.npy",
        folder / f"global-m{multiple}-s{scale}" / f"{digest}.npy",
    )
    decoded = False
    pixels = _load(entry.pixels, None, (np.uint8, np.uint16))
    if pixels is None:
        img = read_image(path)
        pixels, decoded = _to_integers(img.rgb, img.bit_depth, path), True
        _save(entry.pixels, pixels)
    shape = _view_shape(pixels.shape, multiple, scale)
    if _load(entry.views, shape, (np.float32,)) is None:  # new (multiple, scale), or damaged
        rgb = as_float(np.asarray(pixels))
        _save(entry.views, np.stack([global_view(rgb, k, multiple, scale) for k in range(4)]))
    return entry, decoded


def open_cache(
    pairs: list[Pair], cache: str | Path, multiple: int, scale: int, progress: bool = True
) -> list[CachedPair]:
    """Decode each pair into `cache` unless it is there already, and return sources that read
    the cached arrays: training then decodes nothing. Logs how many were decoded and reused."""
    folder = Path(cache) / _VERSION
    folder.mkdir(parents=True, exist_ok=True)
    index = _Index(folder / "index.json")
    sources, decoded = [], 0
    try:
        for p in tqdm(pairs, desc="cache train data", unit="pair", disable=not progress):
            (ex, dx), (ey, dy) = (
                _ensure(f, index, multiple, scale, folder) for f in (p.input, p.target)
            )
            hx, hy = (np.load(e.pixels, mmap_mode="r").shape for e in (ex, ey))
            check_pair_size(p, hx, hy)
            sources.append(CachedPair(p.name, ex, ey))
            decoded += dx or dy
    finally:
        index.save()
    log.info(
        "train data cache %s: %d pair(s) decoded, %d reused", folder, decoded, len(pairs) - decoded
    )
    return sources


def cache_size(cache: str | Path) -> int:
    """Bytes the cache folder holds, for reports and benchmarks."""
    return sum(f.stat().st_size for f in Path(cache).rglob("*") if f.is_file())
