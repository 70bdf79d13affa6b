"""Command line (also `python -m glsgn`):

glsgn restore IMAGES... -o OUTDIR --checkpoint CKPT
glsgn prepare TASK            (the prepare@TASK stage of dvc.yaml)
glsgn train RUN --seed S      (train@..., under torchrun when train.nproc > 1)
glsgn evaluate RUN --seed S   (evaluate@...)
glsgn ablate                  (the ablation stage: reports/ablation.json)
glsgn profile DIR             (a profile's params.yaml and dvc.yaml from DIR/profile.yaml)
glsgn photos --debs DIR       (real photographs from Debian packages, each checked)
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import torch
from torch import nn
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from .atomic import TEMP_TAIL, temp_prefix
from .checkpoint import CheckpointError, load_checkpoint
from .config import (
    ConfigError,
    ModelConfig,
    Precision,
    RestoreConfig,
    load_params,
    load_restore,
    parse_memory,
)
from .data.io import ImageError, read_image, write_image
from .data.paired import PairedFolderError
from .restore import check_precision, resolve_device, restore
from .variants import architecture

log = logging.getLogger("glsgn")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _patch_size(s: str) -> int | str:
    return "auto" if s == "auto" else _positive_int(s)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glsgn", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "restore",
        help="restore images of any size (4K, 8K) patch by patch, without seams",
        description="Restore images with a trained checkpoint. Outputs keep the input's file "
        "name, format, bit depth, alpha and grayscale-ness; inputs are never overwritten.",
    )
    r.add_argument("images", nargs="+", type=Path, help="input images (PNG, JPEG, TIFF, ...)")
    r.add_argument("-o", "--outdir", type=_folder, required=True, help="folder for the results")
    r.add_argument("--checkpoint", type=Path, required=True, help="a glsgn checkpoint (.pt)")
    r.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="defaults for the flags below from this file's restore: section, when it exists "
        "(default: params.yaml; without it, the defaults shown)",
    )
    d = RestoreConfig()
    r.add_argument("--device", help=f"auto, cpu, cuda or cuda:N (default {d.device})")
    r.add_argument(
        "--precision",
        choices=get_args(Precision),
        help=f"autocast precision on cuda (default {d.precision})",
    )
    r.add_argument(
        "--patch-size",
        type=_patch_size,
        help=f"auto, or a patch side in pixels (default {d.patch_size}): memory and speed "
        "only, the result does not change; auto on cuda takes the whole image or the largest "
        "patch that fits",
    )
    r.add_argument(
        "--max-memory",
        help="cuda: cap on device memory, e.g. 2GB; auto patches stay under it "
        f"(default {d.max_memory or 'what is free'})",
    )
    r.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    r.add_argument("--quiet", action="store_true", help="no progress bars")

    d = sub.add_parser(
        "prepare",
        help="the prepare@TASK stage: synthesise or check pairs into data/prepared/TASK",
    )
    d.add_argument("task", help="a task of data.tasks in params.yaml")
    d.add_argument("--params", type=Path, default=Path("params.yaml"))
    d.add_argument("--raw", type=Path, help="photographs or pairs (default: data.raw)")
    d.add_argument("--out", type=Path, default=None, help="default: data/prepared/TASK")
    d.add_argument("--quiet", action="store_true", help="no progress bars")

    t = sub.add_parser("train", help="the train@RUN-SEED stage (runs under torchrun too)")
    t.add_argument("run", help="a run TASK-VARIANT that params.yaml makes, e.g. reflection-full")
    t.add_argument("--seed", type=int, help="the training seed (default: the first of train.seeds)")
    t.add_argument("--params", type=Path, default=Path("params.yaml"))
    t.add_argument("--quiet", action="store_true", help="no progress bars")

    e = sub.add_parser("evaluate", help="the evaluate@RUN-SEED stage: full-resolution test metrics")
    e.add_argument("run", help="a run TASK-VARIANT that params.yaml makes")
    e.add_argument("--seed", type=int, help="the model's training seed (default: the first)")
    e.add_argument("--params", type=Path, default=Path("params.yaml"))
    e.add_argument("--quiet", action="store_true", help="no progress bars")

    a = sub.add_parser("ablate", help="the ablation stage: every variant against full, per task")
    a.add_argument("--params", type=Path, default=Path("params.yaml"))
    a.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    a.add_argument("--out", type=Path, default=Path("reports/ablation.json"))

    f = sub.add_parser(
        "profile",
        help="write DIR/params.yaml and DIR/dvc.yaml: params.yaml with DIR/profile.yaml's "
        "differences, and the main pipeline's stages for DIR",
    )
    f.add_argument("dir", type=Path, help="the profile's folder (evidence, evidence/gpu, gpu)")
    f.add_argument("--check", action="store_true", help="only say whether they are current")

    g = sub.add_parser(
        "photos",
        help="the listed photographs (assets/photos) from Debian packages, each checked "
        "against its sha256, with each package's copyright file and a manifest",
    )
    g.add_argument("--listing", type=Path, default=Path("assets/photos"), help="PHOTOS.tsv's")
    g.add_argument("--debs", type=Path, default=Path("debs"), help="folder of .deb files")
    g.add_argument("--out", type=Path, default=Path("data/photos"))
    g.add_argument("--packages", nargs="+", help="default: every listed one but enlightenment")
    g.add_argument("--enlightenment", action="store_true", help="also enlightenment-data (401 MB)")
    g.add_argument("--download", action="store_true", help="apt-get download what --debs lacks")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _plan(images: list[Path], outdir: Path, overwrite: bool) -> list[tuple[Path, Path | None, str]]:
    """(input, output, problem) for each image; a problem means the image is skipped."""
    inputs = {p.resolve() for p in images if p.exists()}
    seen: dict[Path, Path] = {}
    plan = []
    for src in images:
        dst = outdir / src.name
        key = dst.resolve()
        if key in inputs:
            plan.append((src, None, f"output {dst} would overwrite an input; choose another -o"))
        elif key in seen:
            plan.append((src, None, f"output {dst} is already the output of {seen[key]}"))
        elif dst.exists() and not overwrite:
            plan.append((src, None, f"output {dst} exists (use --overwrite to replace it)"))
        else:
            seen[key] = src
            plan.append((src, dst, ""))
    return plan


def _folder(text: str) -> Path:
    """-o's value: Path('') would be the current folder, which nobody means by an empty name."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty folder name (write . for the current folder)")
    return Path(text)


def _restore_options(args: argparse.Namespace) -> RestoreConfig:
    """The flags given, else params.yaml's restore: section (when the file exists; nothing
    else of it is read), else the RestoreConfig defaults: one source for each default."""
    cfg = load_restore(args.params) if args.params.is_file() else RestoreConfig()
    given = {k: getattr(args, k) for k in ("device", "precision", "patch_size", "max_memory")}
    return dataclasses.replace(cfg, **{k: v for k, v in given.items() if v is not None})


class _Signalled(BaseException):
    """SIGTERM (or SIGHUP) arrived: unwind like Ctrl-C, so no temporary file is left."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_signal(signum: int, frame: object) -> None:
    raise _Signalled(signum)


def cmd_restore(args: argparse.Namespace) -> int:
    try:
        opts, device = _restore_setup(args)
        model, meta = load_checkpoint(args.checkpoint)
    except (CheckpointError, ConfigError, ValueError, RuntimeError) as e:
        return _restore_error(str(e))
    _log_checkpoint(args.checkpoint, model.cfg, meta, device, opts)
    try:
        _check_patch_size(model.cfg, opts.patch_size)
    except ValueError as e:
        return _restore_error(f"--patch-size: {e}")
    problem = _make_outdir(args.outdir)
    if problem:
        return _restore_error(problem)
    plan = _plan(args.images, args.outdir, args.overwrite)
    _remove_stale_temporaries(args.outdir, [dst for _, dst, _ in plan if dst is not None])
    failed = done = 0
    # a signal the caller ignores (nohup, a background job of a script) stays ignored
    catch = [s for s in (signal.SIGTERM, signal.SIGHUP) if signal.getsignal(s) != signal.SIG_IGN]
    handlers = {s: signal.signal(s, _raise_signal) for s in catch}
    # one line per image, above one bar over the images on a terminal (none in a log file);
    # a lone image gets its patches' bar instead
    single = len(plan) == 1
    quiet = True if args.quiet or single else None  # None: tqdm's own test for a terminal
    bar = tqdm(plan, desc="restore", unit="image", disable=quiet, leave=False)
    patches = not args.quiet and single and sys.stderr.isatty()
    try:
        with logging_redirect_tqdm(loggers=[logging.root]):
            for src, dst, problem in bar:
                if problem:
                    error = f"{src}: {problem}"
                else:
                    error = _restore_file(src, dst, model, device, opts, patches, args.overwrite)
                if error:
                    _restore_error(error)
                    failed += 1
                else:
                    done += 1
    except (KeyboardInterrupt, _Signalled) as e:
        name = "SIGINT" if isinstance(e, KeyboardInterrupt) else str(e)
        _restore_error(
            f"stopped by {name}: {done} of {len(plan)} image(s) restored, no partial file left"
        )
        return 128 + (e.signum if isinstance(e, _Signalled) else signal.SIGINT)
    finally:
        bar.close()
        for s, h in handlers.items():
            signal.signal(s, h)
    print(f"restored {done} of {len(plan)} image(s) into {args.outdir}", file=sys.stderr)
    return 1 if failed else 0


def _make_outdir(outdir: Path) -> str | None:
    """Create -o if needed; -> None, or why it cannot hold the outputs."""
    if outdir.exists() and not outdir.is_dir():
        return f"-o {outdir}: exists and is not a folder"
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"-o {outdir}: cannot create the folder ({e.strerror or e})"
    if not os.access(outdir, os.W_OK | os.X_OK):
        return f"-o {outdir}: the folder is not writable"
    return None


def _remove_stale_temporaries(outdir: Path, outputs: list[Path]) -> None:
    """Remove what a killed run (SIGKILL, a power cut) left of these outputs: atomic_write's
    temporaries, .NAME.XXXXXXXX.tmp beside each (NAME cut short for a long name)."""
    prefixes = {temp_prefix(dst.name) for dst in outputs}
    pattern = re.compile(rf"^(?P<prefix>\..+\.){TEMP_TAIL}$")
    for f in outdir.iterdir():
        m = pattern.match(f.name)
        if m and m["prefix"] in prefixes and f.is_file():
            f.unlink(missing_ok=True)
            log.info("removed %s, left by an interrupted run", f)


def _restore_error(message: str) -> int:
    """Print one error line (above a progress bar); -> 2, the exit status of a run that could
    not start."""
    tqdm.write(f"glsgn restore: error: {message}", file=sys.stderr)
    return 2


def _restore_warning(message: str) -> None:
    tqdm.write(f"glsgn restore: warning: {message}", file=sys.stderr)


def _restore_setup(args: argparse.Namespace) -> tuple[RestoreConfig, torch.device]:
    """The options and the device, refused (ValueError and the like) before any image is read."""
    opts = _restore_options(args)
    device = resolve_device(opts.device)
    if device.type == "cuda" and opts.max_memory is None:
        # cuDNN times its kernels once per shape; the trials' workspaces could pass a cap
        torch.backends.cudnn.benchmark = True
    if parse_memory(opts.max_memory) and device.type != "cuda":
        raise ValueError(f"--max-memory caps device memory on cuda; the device is {device}")
    check_precision(opts.precision, device, "--precision")
    return opts, device


def _log_checkpoint(
    path: Path, cfg: ModelConfig, meta: dict, device: torch.device, opts: RestoreConfig
) -> None:
    log.info(
        "checkpoint %s: %s, widths %s, trained with glsgn %s; device %s, precision %s, patch %s%s",
        path,
        architecture(cfg),
        list(cfg.widths),
        meta["versions"].get("glsgn"),
        device,
        opts.precision,
        opts.patch_size,
        f", max memory {opts.max_memory}" if opts.max_memory else "",
    )


def _check_patch_size(cfg: ModelConfig, patch_size: int | str) -> None:
    """A fixed patch side must suit the model's grid; refused once here, not once per image."""
    if patch_size != "auto":
        dataclasses.replace(cfg, patch_size=patch_size)  # building a config validates it


def _restore_file(
    src: Path,
    dst: Path,
    model: nn.Module,
    device: torch.device,
    opts: RestoreConfig,
    progress: bool,
    replace: bool,
) -> str | None:
    """Restore one image into `dst`; -> None, or the error line naming `src` (one bad image
    does not stop the others)."""
    try:
        img = read_image(src)
        for note in img.warnings:
            _restore_warning(f"{src}: {note}")
        small = model.pad_multiple
        if min(img.rgb.shape[:2]) < small:
            h, w = img.rgb.shape[:2]
            _restore_warning(
                f"{src}: {w}x{h} has a side below the model's {small}-px grid: it is restored "
                "mirrored out to a size the network works at, so the result may be poor"
            )
        t0 = time.perf_counter()
        out = restore(
            model,
            torch.from_numpy(img.rgb).permute(2, 0, 1),
            device=device,
            precision=opts.precision,
            patch_size=opts.patch_size,
            max_memory=opts.max_memory,
            progress=progress,
        )
        notes = write_image(
            dst,
            out.permute(1, 2, 0).numpy(),
            alpha=img.alpha,
            bit_depth=img.bit_depth,
            grayscale=img.grayscale,
            icc=img.icc,
            exif=img.exif,
            replace=replace,
            format=img.format,  # for an output name without a usable suffix
        )
    except FileExistsError:  # checked free at the start: another run wrote it meanwhile
        return f"{src}: {dst} appeared while restoring (another run?); kept, not replaced"
    except OSError as e:  # what the file system says of the output
        return f"{src}: cannot write {dst} ({e.strerror or e})"
    except (ImageError, ValueError, RuntimeError) as e:
        msg = str(e)  # most already start with the file's path: not twice
        return msg if msg.startswith(str(src)) else f"{src}: {msg}"
    for note in notes:
        _restore_warning(f"{dst}: {note}")
    h, w = img.rgb.shape[:2]
    log.info(
        "%s -> %s (%dx%d, %d-bit, %.1f s)",
        src,
        dst,
        w,
        h,
        img.bit_depth,
        time.perf_counter() - t0,
    )
    return None


def _stage(command: str, work: Callable[[], object], errors: tuple[type[Exception], ...]) -> int:
    """Run a pipeline stage's work; an expected failure is one clear line and exit code 2."""
    try:
        work()
    except errors as e:
        print(f"glsgn {command}: error: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from .data.prepare import prepare

    out = args.out or Path("data/prepared") / args.task
    return _stage(
        "prepare",
        lambda: prepare(
            args.task,
            params := load_params(args.params),
            args.raw or Path(params.data.raw),
            out,
            not args.quiet,
        ),
        (ConfigError, ImageError, PairedFolderError, ValueError),
    )


def cmd_train(args: argparse.Namespace) -> int:
    from .losses import BackboneError
    from .train import TrainError, train

    try:
        nproc = load_params(args.params).train.nproc
    except ConfigError as e:
        print(f"glsgn train: error: {e}", file=sys.stderr)
        return 2
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        # train.nproc: this same command under torchrun, one process per GPU (gloo on a CPU)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += [f"--nproc_per_node={nproc}", "-m", "glsgn", "train", args.run]
        cmd += (
            ["--params", str(args.params), "--quiet"]
            if args.quiet
            else ["--params", str(args.params)]
        )
        cmd += [] if args.seed is None else ["--seed", str(args.seed)]
        log.info("train.nproc %d: %s", nproc, " ".join(cmd))
        return subprocess.run(cmd, check=False).returncode
    return _stage(
        "train",
        lambda: train(args.run, load_params(args.params), seed=args.seed, progress=not args.quiet),
        (ConfigError, TrainError, BackboneError, PairedFolderError),
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    return _stage(
        "evaluate",
        lambda: evaluate(
            args.run, load_params(args.params), seed=args.seed, progress=not args.quiet
        ),
        (ConfigError, CheckpointError, PairedFolderError, ValueError),
    )


def cmd_ablate(args: argparse.Namespace) -> int:
    from .results import ablation, write_ablation

    def work() -> None:
        table = ablation(load_params(args.params), args.metrics_dir)
        write_ablation(table, args.out)
        held = sum(r.holds for r in table)
        log.info("ablation: %d contrasts, %d hold; %s", len(table), held, args.out)

    return _stage("ablate", work, (ConfigError, FileNotFoundError))


def cmd_profile(args: argparse.Namespace) -> int:
    from .profiles import write_profile

    try:
        stale = write_profile(args.dir, check=args.check)
    except ConfigError as e:
        print(f"glsgn profile: error: {e}", file=sys.stderr)
        return 2
    for path in stale:
        print(f"{path} is out of date: run glsgn profile {args.dir}" if args.check else path)
    return 1 if args.check and stale else 0


def cmd_photos(args: argparse.Namespace) -> int:
    from .data.photos import PhotoSourceError, fetch_photos, read_listing, read_packages

    def work() -> None:
        m = fetch_photos(
            read_listing(args.listing / "PHOTOS.tsv"),
            args.debs,
            args.out,
            packages=args.packages,
            include_enlightenment=args.enlightenment,
            download=args.download,
            progress=not args.quiet,
            sizes=read_packages(args.listing / "PACKAGES.tsv"),
        )
        log.info(
            "photos: %d from %d packages in %s", len(m["photos"]), len(m["packages"]), args.out
        )

    return _stage("photos", work, (PhotoSourceError,))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    commands = {
        "restore": cmd_restore,
        "prepare": cmd_prepare,
        "train": cmd_train,
        "evaluate": cmd_evaluate,
        "ablate": cmd_ablate,
        "profile": cmd_profile,
        "photos": cmd_photos,
    }
    return commands[args.command](args)
