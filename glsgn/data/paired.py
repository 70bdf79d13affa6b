"""Real paired data: degraded inputs and clean targets in two folders, matched by file name.

This adapter brings in UHR4K, 4KID, 4K-Rain13k, UHDRR4K or a user's own pairs. The problems
a folder of pairs can have (unmatched names, size mismatches, unreadable files) come back
together, in one error that lists each file.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from .io import ImageError, read_image

__all__ = [
    "Pair",
    "PairedFolderError",
    "IMAGE_SUFFIXES",
    "list_images",
    "find_pairs",
    "check_pair_size",
    "check_pairs",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


class PairedFolderError(ValueError):
    """A folder of pairs has problems; the message lists every one."""


@dataclass(frozen=True)
class Pair:
    name: str  # the shared file stem
    input: Path
    target: Path


def list_images(where: Path | str, base: Path | None = None) -> list[Path]:
    """Image files in a folder, or matching a glob (relative to `base`), sorted."""
    where = str(where)
    if base is not None and not Path(where).is_absolute():
        where = str(base / where)
    if any(c in where for c in "*?["):
        paths = [Path(p) for p in glob.glob(where)]
    else:
        folder = Path(where)
        if not folder.is_dir():
            raise PairedFolderError(f"{folder}: no such folder")
        paths = list(folder.iterdir())
    return sorted(p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_pairs(inputs: Path | str, targets: Path | str, base: Path | None = None) -> list[Pair]:
    """Match input and target images by file stem; any unmatched or ambiguous name is an error."""
    ins, outs = list_images(inputs, base), list_images(targets, base)
    problems = []
    by_stem: list[dict[str, Path]] = []
    for files, what in ((ins, "input"), (outs, "target")):
        stems: dict[str, Path] = {}
        for f in files:
            if f.stem in stems:
                problems.append(f"{f}: {what} name {f.stem!r} also used by {stems[f.stem]}")
            stems[f.stem] = f
        by_stem.append(stems)
    a, b = by_stem
    problems += [f"{a[s]}: input has no target named {s}.*" for s in sorted(a.keys() - b.keys())]
    problems += [f"{b[s]}: target has no input named {s}.*" for s in sorted(b.keys() - a.keys())]
    if not ins and not outs:
        problems.append(f"{inputs}, {targets}: no images found")
    _raise_any(problems, "paired folders")
    return [Pair(s, a[s], b[s]) for s in sorted(a)]


def check_pair_size(
    pair: Pair, input_shape: tuple[int, ...], target_shape: tuple[int, ...]
) -> None:
    """Raise a `PairedFolderError` (a ValueError) naming both files and both sizes when an input
    and its target differ in (H, W); the shapes may carry channels, which do not count."""
    (h, w), (th, tw) = input_shape[:2], target_shape[:2]
    if (h, w) != (th, tw):
        raise PairedFolderError(
            f"{pair.input}: size {w}x{h} differs from its target {pair.target} ({tw}x{th})"
        )


def check_pairs(pairs: list[Pair]) -> list[tuple[int, int]]:
    """Decode every image; sizes (H, W) per pair, or one error listing every bad file."""
    problems, sizes = [], []
    for p in pairs:
        shapes = []
        for f in (p.input, p.target):
            try:
                shapes.append(read_image(f).rgb.shape[:2])
            except ImageError as e:
                problems.append(str(e))
        if len(shapes) == 2:
            try:
                check_pair_size(p, *shapes)
            except PairedFolderError as e:
                problems.append(str(e))
        sizes.append(shapes[0] if shapes else (0, 0))
    _raise_any(problems, "paired images")
    return sizes


def _raise_any(problems: list[str], what: str) -> None:
    """All of a folder's problems in one error: fixing them one run at a time would be slow."""
    if problems:
        lines = "\n  ".join(problems)
        raise PairedFolderError(f"{len(problems)} problem(s) with {what}:\n  {lines}")
