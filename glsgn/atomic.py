"""Atomic file writes: a temporary file beside the target, fsync, then rename.

Readers (and a run killed half-way) never see half a file; the old file stays until the new
one is complete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "temp_prefix", "TEMP_TAIL"]

_NAME_MAX = 255  # bytes in one file name (ext4, xfs, btrfs, APFS, NTFS in UTF-16 units)
TEMP_TAIL = r"[a-z0-9_]{8}\.tmp"  # what follows temp_prefix in a temporary's name (mkstemp's)


def temp_prefix(name: str) -> str:
    """'.NAME.', the start of NAME's temporaries; NAME cut short (in bytes) where the whole
    temporary's name would pass the file system's limit, so a 255-byte NAME can be written."""
    room = _NAME_MAX - len(".") - len(".") - 8 - len(".tmp")
    raw = os.fsencode(name)
    if len(raw) <= room:
        return f".{name}."
    for cut in range(room, room - 4, -1):  # at a character's start: APFS refuses half of one
        try:
            return f".{raw[:cut].decode('utf-8')}."
        except UnicodeDecodeError:
            continue
    return f".{os.fsdecode(raw[:room])}."  # a name that is not UTF-8 anyway


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, replace: bool = True) -> Iterator[BinaryIO]:
    """Open a temporary binary file beside `path`; on success it replaces `path`, keeping the
    old file's permissions, or giving a new file the usual ones (0666 less the umask).

    `replace=False`: a file that appears at `path` meanwhile (another process) is kept and
    FileExistsError raised: the finished file is linked in, which fails rather than replace
    (on a file system without hard links, a check then a rename: a narrow race remains)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            # mkstemp makes the file 0600: right while it is private, wrong for an output
            os.fchmod(f.fileno(), _mode(path))
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _link_new(tmp: str, path: Path) -> None:
    """Move `tmp` to `path` unless `path` exists (FileExistsError)."""
    try:
        os.link(tmp, path)  # atomic, and never replaces
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT, some network file systems)
        if os.path.lexists(path):  # a dangling link too, as os.link would refuse it
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        os.rename(tmp, path)
        return
    os.unlink(tmp)


def _mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def _read_umask() -> int:
    umask = os.umask(0)  # the only portable way to read it; done once, at import
    os.umask(umask)
    return umask


_UMASK = _read_umask()
