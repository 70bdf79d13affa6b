"""The prepare@task stage: data/raw -> data/prepared/{task}/{train,val,test}/{input,target}.

A task of `data.tasks` is a name: it synthesises a registered degradation (glsgn/data/
synthesis.py) or reads a paired dataset (`paired:`).
Synthetic: clean images are the starter photographs, randomly cropped and scaled to the
profile's size, and dead-leaves scenes; each gets the task's degradation.
Photographs are split between train, val and test, so no photograph is in two splits.
Paired: a dataset as it ships, in data/raw (`data.tasks.TASK.paired`, docs/datasets.md):
every pair of every split is matched and checked first, then each split lists its pairs where
they lie (pairs.json, with checksums in the manifest): a UHR dataset is never copied.
The result is written to a temporary folder and renamed, with a manifest of sizes, seeds,
parameters and checksums.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from ..config import ConfigError, DataConfig, Params
from . import synthesis, task_key
from .io import read_image, write_image
from .paired import LISTING, check_pairs, dataset_pairs, list_images
from .scenes import dead_leaves

__all__ = ["SPLITS", "prepare", "sample_seed", "synthesize_sample"]

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


def sample_seed(base: int, task: str, split: str, index: int) -> int:
    """Independent, stable seed per (task, split, index)."""
    seq = np.random.SeedSequence([base, task_key(task), SPLITS.index(split), index])
    return int(seq.generate_state(1)[0])


def split_photos(photos: list[tuple[str, np.ndarray]]) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Every fifth photograph (sorted by name) goes to test, the next to val, the rest to train."""
    return {
        "test": photos[0::5],
        "val": photos[1::5],
        "train": [p for i, p in enumerate(photos) if i % 5 > 1],
    }


def _photo_crop(img: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of the target aspect (70-100% of the largest), flipped at random, resized."""
    ih, iw = img.shape[:2]
    ch, cw = (ih, round(ih * w / h)) if iw * h >= ih * w else (round(iw * h / w), iw)
    s = rng.uniform(0.7, 1.0)
    ch, cw = max(1, round(ch * s)), max(1, round(cw * s))
    y, x = rng.integers(0, ih - ch + 1), rng.integers(0, iw - cw + 1)
    crop = img[y : y + ch, x : x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    interp = cv2.INTER_AREA if ch > h else cv2.INTER_CUBIC
    return np.clip(cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=interp), 0, 1)


def _clean(
    photos: list[tuple[str, np.ndarray]], cfg: DataConfig, seed: int, exclude: str = ""
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """A clean image of the profile's size: (image, depth or None, where it came from), never
    from the source `exclude` names (a dead-leaves scene when no other photograph is left)."""
    h, w = cfg.size
    rng = np.random.default_rng(seed)
    pool = [p for p in photos if f"photo:{p[0]}" != exclude]
    if rng.random() < cfg.scene_fraction or not pool:
        scene = dead_leaves(h, w, seed, cfg.scenes)
        return scene.image, scene.depth, f"dead_leaves:{seed}"
    name, img = pool[int(rng.integers(len(pool)))]
    img = img() if callable(img) else img  # a large photograph, decoded when drawn
    return _photo_crop(img, h, w, rng), None, f"photo:{name}"


def synthesize_sample(
    task: str, cfg: DataConfig, photos: list[tuple[str, np.ndarray]], seed: int
) -> tuple[synthesis.Degraded, str]:
    """One synthetic pair for `task`, and a description of its clean source."""
    name = cfg.task(task).degradation
    image, depth, source = _clean(photos, cfg, seed)

    def other() -> synthesis.Clean:
        img, d, src = _clean(photos, cfg, seed + 1, exclude=source)
        return synthesis.Clean(img, d, cfg.scale(*cfg.size), src, other)

    clean = synthesis.Clean(image, depth, cfg.scale(*cfg.size), source, other)
    return synthesis.DEGRADATIONS[name].fn(clean, seed, cfg.degradation(name)), source


def _task_settings(cfg: DataConfig, task: str) -> dict:
    """data's settings that concern `task`: not the other tasks' synthesis or datasets."""
    d = dataclasses.asdict(cfg)
    d["tasks"] = {task: d["tasks"][task]}
    name, settings = cfg.task(task).degradation, None
    if name is not None and (settings := cfg.degradation(name)) is not None:
        settings = dataclasses.asdict(settings)
    d["degradations"] = {name: settings} if name else {}
    return d


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _replace_dir(tmp: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def prepare(task: str, params: Params, raw: Path, out: Path, progress: bool = True) -> dict:
    """Build data/prepared/{task} (`out`) from `raw`; returns the manifest it wrote."""
    cfg = params.data
    if task not in cfg.tasks:
        raise ConfigError(f"data.tasks: no task {task!r} (tasks: {', '.join(cfg.tasks)})")
    source = "paired" if cfg.task(task).paired is not None else "synthetic"
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    manifest: dict = {
        "task": task,
        "source": source,
        "data": _task_settings(cfg, task),
        "samples": [],
    }
    try:
        if source == "synthetic":
            _synthetic(task, cfg, raw, tmp, manifest, progress)
        else:
            _paired(task, cfg, raw, tmp, out, manifest, progress)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("prepared %s (%s): %d pairs in %s", task, source, len(manifest["samples"]), out)
    return manifest


@functools.lru_cache(maxsize=2)
def _decoded(path: Path) -> np.ndarray:
    return read_image(path).rgb


def _photographs(raw: Path) -> list[tuple[str, np.ndarray | Callable[[], np.ndarray]]]:
    """(name, image) of each clean photograph in `raw`, sorted by name: those `glsgn photos`
    listed in its manifest.json, decoded when drawn (forty 4K-6K photographs would not fit in
    memory at once), else its top-level images."""
    listing = raw / "manifest.json"
    if listing.is_file() and "photos" in (m := json.loads(listing.read_text())):
        files = sorted(e["file"] for e in m["photos"])
        return [(f, functools.partial(_decoded, raw / f)) for f in files]
    return [(p.name, read_image(p).rgb) for p in (list_images(raw) if raw.is_dir() else [])]


def _synthetic(task: str, cfg: DataConfig, raw: Path, tmp: Path, manifest: dict, bar: bool) -> None:
    photos = _photographs(raw)
    if not photos:  # a fresh clone before `dvc repro data.dvc`: say so, the data differ
        log.warning(
            "%s %s: no photographs, so every clean image is a dead-leaves scene",
            raw,
            "is not a folder" if not raw.is_dir() else "holds no images",
        )
    log.info(
        "synthesising %s at %dx%d from %d photographs and dead-leaves scenes (seed %d)",
        task,
        cfg.size[1],
        cfg.size[0],
        len(photos),
        cfg.seed,
    )
    by_split = split_photos(photos)
    jobs = [(s, i) for s in SPLITS for i in range(getattr(cfg.splits, s))]
    for split, i in tqdm(jobs, desc=f"prepare {task}", unit="pair", disable=not bar):
        seed = sample_seed(cfg.seed, task, split, i)
        d, src = synthesize_sample(task, cfg, by_split[split], seed)
        name = f"{task}_{split}_{i:04d}.png"
        paths = {}
        for kind, img in (("input", d.degraded), ("target", d.clean)):
            paths[kind] = tmp / split / kind / name
            paths[kind].parent.mkdir(parents=True, exist_ok=True)
            write_image(paths[kind], img)
        manifest["samples"].append(
            {
                "name": name,
                "split": split,
                "seed": seed,
                "source": src,
                "size": list(cfg.size),
                "params": d.params,
                "sha256": {k: _sha256(p) for k, p in paths.items()},
            }
        )


def _paired(
    task: str, cfg: DataConfig, raw: Path, tmp: Path, out: Path, manifest: dict, bar: bool
) -> None:
    """A paired dataset is checked, then referenced where it lies: each split's pairs.json
    lists its files (relative to the split's folder) and checksums; nothing is copied."""
    splits, origin = dataset_pairs(cfg.task(task).paired, raw, task, cfg.seed)
    jobs = [(split, p) for split in SPLITS for p in splits[split]]
    for split in SPLITS:
        log.info("%s/%s: %d pairs from %s", task, split, len(splits[split]), origin[split])
    sizes = check_pairs([p for _, p in jobs], bar)  # every pair read before any is listed
    manifest["splits"] = origin
    listed: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for (split, p), hw in tqdm(
        list(zip(jobs, sizes, strict=True)), desc=f"checksum {task}", unit="pair", disable=not bar
    ):
        entry = {"name": p.name, "split": split, "size": list(hw), "sha256": {}}
        for kind, src in (("input", p.input), ("target", p.target)):
            # lexical, not through symlinks: a dataset in data/raw stays ../../../raw/...
            entry[kind] = os.path.relpath(os.path.abspath(src), os.path.abspath(out / split))
            entry["sha256"][kind] = _sha256(src)
        listed[split].append({k: entry[k] for k in ("name", "input", "target")})
        manifest["samples"].append(entry)
    for split, entries in listed.items():
        (tmp / split).mkdir(parents=True, exist_ok=True)
        (tmp / split / LISTING).write_text(json.dumps(entries, indent=1) + "\n")
