"""Real paired data: degraded inputs and clean targets, as each dataset ships them.

`data.tasks.TASK.paired` (`PairedConfig`) says where a dataset's splits and folders are and how an
input finds its target: equal stems, stems after a pattern (``{id}_hazy`` / ``{id}_gt``), a
listing file (UHDRR4K's JSON), or sorted order where the names say nothing. Every problem a
dataset has (a missing partner, a repeated name, a file listed but absent, a size mismatch,
an unreadable file) comes back together, in one error that names each file.
"""

from __future__ import annotations

import glob
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..config import PairedConfig
from . import task_key
from .io import ImageError, read_image

__all__ = [
    "LISTING",
    "split_pairs",
    "Pair",
    "PairedFolderError",
    "IMAGE_SUFFIXES",
    "list_images",
    "find_pairs",
    "dataset_pairs",
    "check_pair_size",
    "check_pairs",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".bmp", ".webp"}
IMAGE_SUFFIXES |= {".ppm", ".pgm", ".avif"}


class PairedFolderError(ValueError):
    """A folder of pairs has problems; the message lists every one."""


@dataclass(frozen=True)
class Pair:
    name: str  # the shared stem ({id}), or the input's stem
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


def _stem_regex(pattern: str) -> re.Pattern:
    """'{id}_hazy' -> ^(?P<id>.+?)_hazy$; '*' is any run of characters."""
    parts = [re.escape(p).replace(r"\*", ".*") for p in pattern.split("{id}")]
    return re.compile("^" + "(?P<id>.+?)".join(parts) + "$")


def _by_id(files: list[Path], pattern: str, what: str, problems: list[str]) -> dict[str, Path]:
    rx, ids = _stem_regex(pattern), {}
    for f in files:
        m = rx.match(f.stem)
        if m is None:
            problems.append(f"{f}: {what} name does not match the stem pattern {pattern!r}")
        elif m["id"] in ids:
            problems.append(f"{f}: {what} name {m['id']!r} also used by {ids[m['id']]}")
        else:
            ids[m["id"]] = f
    return ids


def _match_stems(
    ins: list[Path], outs: list[Path], input_stem: str, target_stem: str
) -> tuple[list[Pair], list[str]]:
    problems: list[str] = []
    a = _by_id(ins, input_stem, "input", problems)
    b = _by_id(outs, target_stem, "target", problems)
    problems += [f"{a[s]}: input has no target for {s!r}" for s in sorted(a.keys() - b.keys())]
    problems += [f"{b[s]}: target has no input for {s!r}" for s in sorted(b.keys() - a.keys())]
    return [Pair(s, a[s], b[s]) for s in sorted(a.keys() & b.keys())], problems


def _match_sorted(ins: list[Path], outs: list[Path]) -> tuple[list[Pair], list[str]]:
    if len(ins) != len(outs):
        where = ins[0].parent if ins else outs[0].parent if outs else "?"
        return [], [f"{where}: {len(ins)} inputs but {len(outs)} targets, to pair by order"]
    problems: list[str] = []
    _by_id(ins, "{id}", "input", problems)  # a prepared pair is named by its input's stem
    return [Pair(i.stem, i, t) for i, t in zip(ins, outs, strict=True)], problems


def _match_listing(
    listing: Path, input_dir: Path, target_dir: Path, keys: tuple[str, str]
) -> tuple[list[Pair], list[str]]:
    """Pairs named by a JSON list of entries, each naming its input and target file."""
    try:
        entries = json.loads(listing.read_text())
    except FileNotFoundError:
        return [], [f"{listing}: no such listing file"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return [], [f"{listing}: not a readable JSON listing ({e})"]
    if not isinstance(entries, list):
        return [], [f"{listing}: expected a JSON list of entries, got {type(entries).__name__}"]
    pairs, problems, names = [], [], {}
    for i, entry in enumerate(entries):
        where = f"{listing}, entry {i}"
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in keys):
            problems.append(f"{where}: expected a mapping with file names under {list(keys)}")
            continue
        files = [input_dir / entry[keys[0]], target_dir / entry[keys[1]]]
        missing = [f for f in files if not f.is_file()]
        problems += [f"{where}: {f}: no such file" for f in missing]
        name = files[0].stem
        if name in names:
            problems.append(f"{where}: input name {name!r} also listed in entry {names[name]}")
        elif not missing:
            names[name] = i
            pairs.append(Pair(name, *files))
    if not entries:
        problems.append(f"{listing}: lists no pairs")
    return pairs, problems


def find_pairs(
    inputs: Path | str,
    targets: Path | str,
    base: Path | None = None,
    input_stem: str = "{id}",
    target_stem: str = "{id}",
) -> list[Pair]:
    """Match input and target images by stem (after the stem patterns); any unmatched or
    ambiguous name is an error."""
    ins, outs = list_images(inputs, base), list_images(targets, base)
    pairs, problems = _match_stems(ins, outs, input_stem, target_stem)
    if not ins and not outs:
        problems.append(f"{inputs}, {targets}: no images found")
    _raise_any(problems, "paired folders")
    return pairs


LISTING = "pairs.json"  # a prepared split of a paired dataset: its pairs, where they lie


def split_pairs(folder: str | Path) -> list[Pair]:
    """The pairs of a prepared split (data/prepared/TASK/SPLIT): a paired dataset's are listed
    in its pairs.json, paths relative to the split's folder, so a dataset of hundreds of GB is
    referenced where it lies, never copied; synthesised pairs are its input/ and target/."""
    folder = Path(folder)
    listing = folder / LISTING
    if listing.is_file():
        entries = json.loads(listing.read_text())
        return [Pair(e["name"], folder / e["input"], folder / e["target"]) for e in entries]
    return find_pairs("input", "target", base=folder)


def _split_pairs(cfg: PairedConfig, folder: Path, split: str) -> tuple[list[Pair], list[str]]:
    """One split folder's pairs, matched as `cfg.match` says, and its problems."""
    try:
        if cfg.match == "listing":
            name = cfg.listing.replace("{split}", folder.name)  # type: ignore[union-attr]
            keys = cfg.listing_keys
            return _match_listing(folder / name, folder / cfg.input, folder / cfg.target, keys)
        ins, outs = list_images(cfg.input, folder), list_images(cfg.target, folder)
    except PairedFolderError as e:
        return [], [str(e)]
    if not ins and not outs:
        return [], [f"{folder}: no images in {cfg.input!r} or {cfg.target!r} ({split} split)"]
    if cfg.match == "sorted":
        return _match_sorted(ins, outs)
    return _match_stems(ins, outs, cfg.input_stem, cfg.target_stem)


def _draw(pairs: list[Pair], fraction: float, rng: np.random.Generator) -> tuple[list, list]:
    """(drawn, rest): a seeded share of `pairs`, at least one, both in sorted order."""
    n = max(1, round(fraction * len(pairs)))
    chosen = set(rng.permutation(len(pairs))[:n].tolist())
    drawn = [p for i, p in enumerate(pairs) if i in chosen]
    return drawn, [p for i, p in enumerate(pairs) if i not in chosen]


def dataset_pairs(
    cfg: PairedConfig, raw: Path, task: str, seed: int
) -> tuple[dict[str, list[Pair]], dict[str, str]]:
    """Every split's pairs of `task`'s dataset in `raw` ({split: pairs}), and where each
    split came from ({split: its folder, or "drawn from train"}); one error lists every
    problem of every split. A null val or test folder is drawn from train with `seed`."""
    root = raw / (cfg.root or task)
    out: dict[str, list[Pair]] = {}
    origin: dict[str, str] = {}
    problems: list[str] = []
    if not root.is_dir():
        raise PairedFolderError(f"{root}: no such folder (data.tasks.{task}.paired.root)")
    for split in ("train", "val", "test"):
        folder = getattr(cfg.splits, split)
        if folder is not None:
            out[split], found = _split_pairs(cfg, root / folder, split)
            origin[split] = str(root / folder)
            problems += found
    if cfg.match == "sorted":
        log.warning(
            "%s: pairing inputs and targets by sorted order (data.tasks.%s.paired.match: sorted); "
            "their names are not checked",
            root,
            task,
        )
    rng = np.random.default_rng([seed, task_key(task)])
    for split in ("test", "val"):  # test first: it never depends on the val fraction
        if split not in out:
            fraction = getattr(cfg, f"{split}_fraction")
            out[split], out["train"] = _draw(out.get("train", []), fraction, rng)
            origin[split] = f"drawn from train ({fraction:g}, data.seed {seed})"
    users: dict[Path, str] = {}
    for split, pairs in out.items():
        if not pairs and not problems:
            problems.append(f"{root}: no pairs left for {split} ({origin[split]})")
        for p in pairs:
            for f in (p.input, p.target):
                if f in users:
                    problems.append(f"{f}: used by two pairs ({users[f]} and {split} {p.name})")
                users[f] = f"{split} {p.name}"
    _raise_any(problems, f"the {task} dataset in {root}")
    return out, origin


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


def check_pairs(pairs: list[Pair], progress: bool = False) -> list[tuple[int, int]]:
    """Decode every image; sizes (H, W) per pair, or one error listing every bad file."""
    problems, sizes = [], []
    for p in tqdm(pairs, desc="check pairs", unit="pair", disable=not progress):
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
