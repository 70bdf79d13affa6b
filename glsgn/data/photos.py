"""Real high-resolution photographs from Debian packages: a listing, a .deb reader, a photo source.

The listing (PHOTOS.tsv, PACKAGES.tsv) names freely licensed photographs inside Debian archive
packages, each pinned by its sha256. `fetch_photos` finds each package's .deb in a folder the
user supplies (or fetches it with `apt-get download`), unpacks only the listed photos and the
package's copyright file with the standard library, checks every photo against its sha256 and
writes them, with a manifest, into an output folder that is replaced whole at the end, so a
failed run leaves the previous output as it was.

Why the standard library and not `dpkg-deb -x`: dpkg exists only on Debian-like systems, and
unpacking a whole 400 MB package to keep twelve files is slow. A .deb is an `ar` archive of
`debian-binary`, `control.tar.*` and `data.tar.*`; `tarfile` reads the last one as a stream,
member by member, straight from the .deb's file object, so nothing is held in memory whole but
the photos themselves.

The .deb version may differ from the listed one (mirrors keep only the current version): the
photos' sha256 are what must match, and the manifest records the version that was used.

enlightenment-data (401 MB) keeps each photo as the largest of several JPEGs embedded in an .edj
file; `largest_jpeg` finds it by walking JPEG marker segments (see `find_jpegs`). It is optional:
fetched only with `include_enlightenment`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tqdm import tqdm

from ..atomic import atomic_write

__all__ = [
    "OPTIONAL_PACKAGES",
    "ArMember",
    "DebControl",
    "DebPackage",
    "Jpeg",
    "Photo",
    "PhotoSourceError",
    "fetch_photos",
    "find_jpegs",
    "iter_ar",
    "largest_jpeg",
    "read_control",
    "read_listing",
    "read_packages",
]

log = logging.getLogger(__name__)

# Fetched only on request: enlightenment-data is a 401 MB download for 14 photos.
OPTIONAL_PACKAGES = ("enlightenment-data",)

_PHOTO_COLUMNS = ["package", "version", "path_in_package", "sha256", "width", "height", "license"]
_PACKAGE_COLUMNS = ["package", "version", "deb_bytes", "sha256"]
_EMBEDDED = " (largest embedded JPEG)"  # after an .edj path in PHOTOS.tsv
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class PhotoSourceError(ValueError):
    """A photo cannot be had as listed: the message names the package and what to do."""


# ---------------------------------------------------------------------------------------------
# The listing


@dataclass(frozen=True)
class Photo:
    """One row of PHOTOS.tsv: a photograph inside a package, pinned by its sha256."""

    package: str
    version: str  # the version the listing was made from; another may hold the same photo
    path: str  # inside the package, without a leading "./" or "/"
    sha256: str
    width: int
    height: int
    license: str
    embedded: bool = False  # the photo is the largest JPEG embedded in the file at `path`

    @property
    def source(self) -> str:
        """The path as PHOTOS.tsv writes it."""
        return self.path + (_EMBEDDED if self.embedded else "")


@dataclass(frozen=True)
class DebPackage:
    """One row of PACKAGES.tsv: the .deb the listing was made from."""

    package: str
    version: str
    deb_bytes: int
    sha256: str


def _rows(path: Path, columns: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a tab-separated file whose header must be `columns`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PhotoSourceError(f"{path}: listing not found") from None
    reader = csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None)
    if header != columns:
        raise PhotoSourceError(f"{path}: expected the header {' '.join(columns)}, got {header}")
    for line, row in enumerate(reader, start=2):
        if not row or row == [""]:
            continue
        if len(row) != len(columns):
            raise PhotoSourceError(
                f"{path}:{line}: expected {len(columns)} columns, got {len(row)}"
            )
        yield line, dict(zip(columns, row, strict=True))


def _positive(path: Path, line: int, key: str, value: str) -> int:
    if not value.isdigit() or int(value) <= 0:
        raise PhotoSourceError(f"{path}:{line}: {key} must be a positive integer, got {value!r}")
    return int(value)


def _sha(path: Path, line: int, value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise PhotoSourceError(f"{path}:{line}: sha256 must be 64 lowercase hex digits: {value!r}")
    return value


def read_listing(photos_tsv: str | os.PathLike) -> list[Photo]:
    """The photographs of PHOTOS.tsv (package, version, path_in_package, sha256, width, height,
    license), in its order; an .edj path followed by "(largest embedded JPEG)" is `embedded`."""
    path = Path(photos_tsv)
    photos, seen = [], set()
    for line, r in _rows(path, _PHOTO_COLUMNS):
        source = r["path_in_package"]
        embedded = source.endswith(_EMBEDDED)
        member = _norm(source.removesuffix(_EMBEDDED))
        if not r["package"] or not member:
            raise PhotoSourceError(f"{path}:{line}: empty package or path")
        if (r["package"], member) in seen:
            raise PhotoSourceError(f"{path}:{line}: {r['package']} {member} is listed twice")
        seen.add((r["package"], member))
        photos.append(
            Photo(
                package=r["package"],
                version=r["version"],
                path=member,
                sha256=_sha(path, line, r["sha256"]),
                width=_positive(path, line, "width", r["width"]),
                height=_positive(path, line, "height", r["height"]),
                license=r["license"],
                embedded=embedded,
            )
        )
    return photos


def read_packages(packages_tsv: str | os.PathLike) -> dict[str, DebPackage]:
    """The .deb files of PACKAGES.tsv (package, version, deb_bytes, sha256), by package."""
    path = Path(packages_tsv)
    return {
        r["package"]: DebPackage(
            package=r["package"],
            version=r["version"],
            deb_bytes=_positive(path, line, "deb_bytes", r["deb_bytes"]),
            sha256=_sha(path, line, r["sha256"]),
        )
        for line, r in _rows(path, _PACKAGE_COLUMNS)
    }


# ---------------------------------------------------------------------------------------------
# The .deb reader: ar, then tar, streaming


@dataclass(frozen=True)
class ArMember:
    """A member of an ar archive: its name and where its data lie in the file."""

    name: str
    offset: int
    size: int


class _Slice(io.RawIOBase):
    """`size` bytes of `f` from `offset`, read forward only: one ar member as a file of its
    own, so that tarfile's stream mode decompresses it without reading it into memory."""

    def __init__(self, f: BinaryIO, offset: int, size: int) -> None:
        f.seek(offset)
        self._f, self._left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:
        n = min(len(b), self._left)
        data = self._f.read(n)
        b[: len(data)] = data
        self._left -= len(data)
        return len(data)


def iter_ar(f: BinaryIO) -> Iterator[ArMember]:
    """The members of the ar archive open in `f` (seekable), in order.

    The format: the magic `!<arch>\\n`, then per member a 60-byte header (name 16, mtime 12,
    uid 6, gid 6, mode 8, size 10 bytes in ASCII, then the bytes "`\\n"), its data, and one
    padding byte after data of odd length. GNU names end with "/"; BSD long names ("#1/N")
    store the name's N bytes at the start of the data. The GNU symbol and name tables ("/",
    "//") are skipped: a .deb has neither.
    """
    if f.read(8) != b"!<arch>\n":
        raise ValueError("not an ar archive (no !<arch> magic)")
    while True:
        header = f.read(60)
        if not header:
            return
        if len(header) < 60 or header[58:60] != b"`\n":
            raise ValueError(f"damaged ar member header at byte {f.tell() - len(header)}")
        try:
            name = header[:16].decode("ascii").rstrip(" ")
            size = int(header[48:58].decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            raise ValueError(f"damaged ar member header at byte {f.tell() - 60}") from None
        offset = f.tell()
        end = offset + size + (size & 1)
        if name.startswith("#1/"):  # BSD: the name is the first N bytes of the data
            n = int(name[3:])
            name = f.read(n).decode("utf-8").rstrip("\0")
            offset, size = offset + n, size - n
        elif name not in ("/", "//"):
            name = name.removesuffix("/")
        if name not in ("/", "//"):
            yield ArMember(name, offset, size)
        f.seek(end)


def _norm(name: str) -> str:
    """A tar member's name as a plain relative path: "./usr/x/" -> "usr/x"."""
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/")


@contextlib.contextmanager
def _open_tar(f: BinaryIO, member: ArMember) -> Iterator[tarfile.TarFile]:
    """The tar archive in ar member `member` (plain, gz, bz2 or xz; zst with a zstd module),
    as a stream: members must be read in order, each before the next."""
    raw = io.BufferedReader(_Slice(f, member.offset, member.size), _CHUNK)
    suffix = member.name.rpartition(".tar")[2]
    modes = {"": "r|", ".gz": "r|gz", ".bz2": "r|bz2", ".xz": "r|xz"}
    if suffix in modes:
        fileobj, mode = raw, modes[suffix]
    elif suffix == ".zst":
        fileobj, mode = _zstd_reader(raw, member.name), "r|"
    else:
        raise _Unsupported(f"{member.name}: this compression is not supported (xz, gz, bz2, zst)")
    with tarfile.open(fileobj=fileobj, mode=mode) as tar:
        yield tar


class _Unsupported(ValueError):
    """A .deb this reader cannot unpack although it is one."""


class _Missing(ValueError):
    """A .deb that lacks a listed member."""


def _zstd_reader(raw: BinaryIO, name: str) -> BinaryIO:
    """A decompressing reader for zstd (Ubuntu's packages use it): Python 3.14's own module,
    else the `zstandard` package when installed."""
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python >= 3.14

        return zstd.ZstdFile(raw)
    except ImportError:
        pass
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        raise _Unsupported(
            f"{name} is compressed with zstd, which Python reads only from 3.14 on: "
            "pip install zstandard (or use the Debian .deb, compressed with xz)"
        ) from None
    return zstandard.ZstdDecompressor().stream_reader(raw)


def _members(f: BinaryIO, path: Path) -> dict[str, ArMember]:
    """The ar members of a .deb, checked to be one."""
    try:
        f.seek(0)
        members = {m.name: m for m in iter_ar(f)}
    except ValueError as e:
        raise ValueError(f"{path.name} is not a Debian package: {e}") from None
    if "debian-binary" not in members:
        raise ValueError(f"{path.name} is not a Debian package: it has no debian-binary member")
    return members


def _one(members: dict[str, ArMember], prefix: str, path: Path) -> ArMember:
    found = [m for name, m in members.items() if name.startswith(prefix)]
    if len(found) != 1:
        raise ValueError(f"{path.name}: expected one {prefix}* member, found {len(found)}")
    return found[0]


@dataclass(frozen=True)
class DebControl:
    """What a .deb says of itself in its control file."""

    package: str
    version: str
    architecture: str


def read_control(deb: str | os.PathLike) -> DebControl:
    """The Package, Version and Architecture fields of a .deb's control file.

    Raises ValueError when the file is not a .deb or is damaged."""
    path = Path(deb)
    with open(path, "rb") as f:
        member = _one(_members(f, path), "control.tar", path)
        try:
            with _open_tar(f, member) as tar:
                for info in tar:
                    if _norm(info.name) == "control" and info.isreg():
                        text = tar.extractfile(info).read().decode("utf-8", "replace")
                        break
                else:
                    raise ValueError(f"{path.name}: control.tar has no control file")
        except (tarfile.TarError, EOFError, OSError) as e:
            raise ValueError(f"{path.name}: damaged control archive ({e})") from None
    fields = dict(re.findall(r"^([A-Za-z0-9-]+):[ \t]*(.*)$", text, flags=re.M))
    if "Package" not in fields:
        raise ValueError(f"{path.name}: the control file has no Package field")
    return DebControl(fields["Package"], fields.get("Version", ""), fields.get("Architecture", ""))


# ---------------------------------------------------------------------------------------------
# JPEGs embedded in other files (.edj)


@dataclass(frozen=True)
class Jpeg:
    """A complete JPEG inside a larger file: `data[start:end]`, of width x height pixels."""

    start: int
    end: int
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


# SOFn markers carry the frame's size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field
_SEGMENT = frozenset({*range(0xC0, 0xD0), *range(0xDA, 0xE0), *range(0xE0, 0xF0), 0xFE})


def _walk(data: bytes, start: int) -> Jpeg | None:
    """The JPEG that starts at `data[start]` (its SOI), or None when the marker structure there
    is not a complete JPEG. Segments are skipped by their length, so a JPEG inside an APPn
    segment (an EXIF thumbnail, with its own FF D9) is passed over whole; after SOS the
    entropy-coded data runs to the next marker that is neither a stuffed byte (FF 00) nor a
    restart (FF D0-D7)."""
    i, n = start + 2, len(data)
    width = height = 0
    while True:
        if i + 1 >= n or data[i] != 0xFF:
            return None
        while i + 1 < n and data[i + 1] == 0xFF:  # fill bytes before a marker
            i += 1
        if i + 1 >= n:
            return None
        marker = data[i + 1]
        i += 2
        if marker == 0xD9:  # EOI
            return Jpeg(start, i, width, height) if width and height else None
        if marker in _STANDALONE:
            continue
        if marker not in _SEGMENT or i + 2 > n:
            return None
        length = int.from_bytes(data[i : i + 2], "big")
        if length < 2 or i + length > n:
            return None
        if marker in _SOF and length >= 7:
            height = int.from_bytes(data[i + 3 : i + 5], "big")
            width = int.from_bytes(data[i + 5 : i + 7], "big")
        i += length
        if marker == 0xDA:  # SOS: entropy-coded data up to the next real marker
            while True:
                i = data.find(b"\xff", i)
                if i < 0 or i + 1 >= n:
                    return None
                following = data[i + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    i += 2
                elif following == 0xFF:
                    i += 1
                else:
                    break


def find_jpegs(data: bytes) -> list[Jpeg]:
    """Every complete JPEG in `data`, in order: each found at an `FF D8 FF` start and walked
    segment by segment to its end-of-image marker. The search goes on after a JPEG's end, so
    JPEGs nested inside it (thumbnails in APPn segments) are part of it, not found apart."""
    found, pos = [], 0
    while (pos := data.find(b"\xff\xd8\xff", pos)) >= 0:
        jpeg = _walk(data, pos)
        if jpeg is None:
            pos += 1
        else:
            found.append(jpeg)
            pos = jpeg.end
    return found


def largest_jpeg(data: bytes) -> bytes:
    """The embedded JPEG with the most pixels, byte for byte (the first of equals); ValueError
    when there is none."""
    jpegs = find_jpegs(data)
    if not jpegs:
        raise ValueError("no complete JPEG inside")
    best = max(jpegs, key=lambda j: j.pixels)  # max keeps the first of equals
    return data[best.start : best.end]


# ---------------------------------------------------------------------------------------------
# The photo source


def _file_names(photos: Sequence[Photo]) -> dict[str, str]:
    """A flat file name for each photo of one package: its base name (an .edj's stem + .jpg);
    photos whose base names collide (plasma's wallpapers are .../NAME/contents/images/
    1920x1080.jpg) are prefixed by the first folder that tells them apart: "Kite-1920x1080.jpg"."""

    def base(p: Photo) -> str:
        name = PurePosixPath(p.path)
        return name.stem + ".jpg" if p.embedded else name.name

    names = {p.path: base(p) for p in photos}
    for name in set(names.values()):
        group = [p.path for p in photos if base(p) == name]
        if len(group) > 1:
            folders = [PurePosixPath(path).parent.parts for path in group]
            common = len(os.path.commonprefix(folders))
            for path, folder in zip(group, folders, strict=True):
                names[path] = f"{folder[common]}-{name}" if len(folder) > common else name
    if len(set(names.values())) != len(names):  # not so in the listing; never silently
        names = {p.path: p.path.replace("/", "-") for p in photos}
    return names


@dataclass
class _Target:
    """Where one wanted member of a package goes."""

    dest: Path
    photo: Photo | None = None  # None: the copyright file


def _deliver(src: BinaryIO, targets: list[_Target]) -> None:
    """Write a member's bytes to each target: a photo as it is, or the largest JPEG inside it."""
    if len(targets) == 1 and not _embedded(targets[0]):
        with open(targets[0].dest, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
        return
    data = src.read()  # an .edj (tens of MB at most) or a member wanted twice
    for t in targets:
        if _embedded(t):
            try:
                t.dest.write_bytes(largest_jpeg(data))
            except ValueError as e:
                raise ValueError(f"{t.photo.path}: {e}") from None
        else:
            t.dest.write_bytes(data)


def _embedded(t: _Target) -> bool:
    return t.photo is not None and t.photo.embedded


def _resolve(name: str, links: dict[str, tuple[str, str]]) -> str:
    """The regular member that `name` stands for, following symbolic links (of the file or of a
    folder above it: usr/share/doc/X may be a link) and hard links, as dpkg would install them."""
    pending, done, hops = list(PurePosixPath(name).parts), [], 0
    while pending:
        part = pending.pop(0)
        if part in ("", ".", "/"):
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        done.append(part)
        kind, target = links.get("/".join(done), ("", ""))
        if kind:
            hops += 1
            if hops > 40:
                raise ValueError(f"{name}: too many levels of links")
            if kind == "hard":  # relative to the archive's root
                done = []
            else:  # symbolic: relative to its folder, or absolute
                done = [] if target.startswith("/") else done[:-1]
            pending = list(PurePosixPath(target).parts) + pending
    return "/".join(done)


def _hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _extract(deb: Path, wanted: dict[str, list[_Target]]) -> None:
    """Write each wanted member of the .deb's data archive to its targets.

    One pass over the stream takes the wanted regular files and notes every link; a member that
    is a link (plasma's 1920x1080.jpg -> 2560x1600.jpg) is then resolved and its target read in
    a second pass, unless the first already wrote it. _Missing names a member it lacks."""
    links: dict[str, tuple[str, str]] = {}
    regular: set[str] = set()
    written: dict[str, Path] = {}  # member -> a file holding its bytes as they are

    def run(want: dict[str, list[_Target]], record: bool) -> None:
        with open(deb, "rb") as f:
            data = _one(_members(f, deb), "data.tar", deb)
            with _open_tar(f, data) as tar:
                for info in tar:
                    name = _norm(info.name)
                    if record and info.issym():
                        links[name] = ("sym", info.linkname)
                    elif record and info.islnk():
                        links[name] = ("hard", _norm(info.linkname))
                    elif info.isreg():
                        if record:
                            regular.add(name)
                        if name in want:
                            _deliver(tar.extractfile(info), want[name])
                            raw = [t.dest for t in want[name] if not _embedded(t)]
                            if raw:
                                written[name] = raw[0]

    run(wanted, record=True)
    second: dict[str, list[_Target]] = {}
    for name, targets in wanted.items():
        if name in regular:
            continue
        real = _resolve(name, links)
        if real not in regular:
            link = f" ({name} is a link to {real})" if real != name else ""
            raise _Missing(f"has no {real}{link}")
        if real in written:
            _deliver(io.BytesIO(written[real].read_bytes()), targets)
        else:
            second.setdefault(real, []).extend(targets)
    if second:
        run(second, record=False)


def _what_to_do(package: str, debs_dir: Path, size: int | None) -> str:
    mb = f", {size / 1e6:.0f} MB" if size else ""
    return (
        f"put {package}_*.deb in {debs_dir} (from any Debian mirror{mb}), or run with download "
        f"(glsgn photos --download) where apt-get exists; if apt-get cannot find {package}, "
        "run apt-get update first"
    )


class _Debs:
    """The .deb files of a folder, by package: by file name (NAME_VERSION_ARCH.deb), else by
    the package name in each file's control file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._by_control: dict[str, list[Path]] | None = None

    def find(self, package: str, version: str) -> tuple[Path, DebControl] | None:
        files = sorted(self.folder.glob(f"{package}_*.deb")) if self.folder.is_dir() else []
        if not files:
            files = self._scan().get(package, [])
        if not files:
            return None
        controls = []
        for path in files:
            try:
                controls.append((path, read_control(path)))
            except _Unsupported as e:
                raise PhotoSourceError(f"{package}: {path.name}: {e}") from None
            except ValueError as e:
                raise PhotoSourceError(
                    f"{package}: {e}; delete {path} and fetch {package} again"
                ) from None
        for path, control in controls:
            if control.package != package:
                raise PhotoSourceError(
                    f"{package}: {path} is package {control.package}, not {package}; rename it "
                    f"or delete it"
                )
        # the listed version first, else the newest file
        controls.sort(key=lambda pc: (pc[1].version != version, -pc[0].stat().st_mtime))
        return controls[0]

    def _scan(self) -> dict[str, list[Path]]:
        if self._by_control is None:
            self._by_control = {}
            for path in sorted(self.folder.glob("*.deb")) if self.folder.is_dir() else []:
                with contextlib.suppress(ValueError, OSError):
                    self._by_control.setdefault(read_control(path).package, []).append(path)
        return self._by_control

    def forget(self) -> None:
        self._by_control = None


def _download(package: str, debs_dir: Path, size: int | None) -> None:
    """`apt-get download PACKAGE` into `debs_dir`: the .deb, not installed, no root needed."""
    if shutil.which("apt-get") is None:
        mb = f", {size / 1e6:.0f} MB" if size else ""
        raise PhotoSourceError(
            f"{package}: no .deb in {debs_dir} and no apt-get here to download it; put "
            f"{package}_*.deb in {debs_dir} (from any Debian mirror{mb})"
        )
    debs_dir.mkdir(parents=True, exist_ok=True)
    log.info("apt-get download %s", package)
    done = subprocess.run(
        ["apt-get", "download", package], cwd=debs_dir, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        errors = [ln for ln in done.stderr.splitlines() if ln.startswith("E:")] or [done.stderr]
        raise PhotoSourceError(
            f"{package}: apt-get download failed ({errors[-1].strip()}); run apt-get update "
            f"(as root) and try again, or put {package}_*.deb in {debs_dir}"
        )


def fetch_photos(
    listing: Sequence[Photo],
    debs_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    packages: Sequence[str] | None = None,
    include_enlightenment: bool = False,
    download: bool = False,
    progress: bool = True,
    sizes: dict[str, DebPackage] | None = None,
) -> dict:
    """Get the listed photos into `out_dir`; return the manifest written there.

    `packages`: the packages to take (None: every listed one but OPTIONAL_PACKAGES);
    `include_enlightenment` adds enlightenment-data to them. Each package's .deb comes from
    `debs_dir`, any version, else (`download`) from `apt-get download`. The output:
    `out_dir/PACKAGE/NAME` per photo (an .edj's photo as STEM.jpg), `out_dir/PACKAGE/copyright`,
    and `out_dir/manifest.json`. All is written into a temporary folder beside `out_dir` that
    replaces it at the end, so a failed run leaves the previous output as it was. `sizes`
    (`read_packages`) only adds each .deb's size to the messages.

    Raises PhotoSourceError naming the package and what to do when a package is missing, a file
    is not a .deb, a listed member is absent or a photo's sha256 differs from the listing's.
    """
    debs_dir, out_dir = Path(debs_dir), Path(out_dir)
    listed = list(dict.fromkeys(p.package for p in listing))
    if packages is None:
        chosen = [p for p in listed if p not in OPTIONAL_PACKAGES]
    else:
        unknown = [p for p in packages if p not in listed]
        if unknown:
            raise PhotoSourceError(
                f"{', '.join(unknown)}: not in the listing; it lists {', '.join(listed)}"
            )
        chosen = list(dict.fromkeys(packages))
    if include_enlightenment:
        chosen += [p for p in OPTIONAL_PACKAGES if p in listed and p not in chosen]
    chosen = [p for p in listed if p in chosen]  # the listing's order
    photos = [p for p in listing if p.package in chosen]

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        manifest = _fetch_into(tmp, photos, chosen, debs_dir, download, progress, sizes or {})
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _fetch_into(
    tmp: Path,
    photos: list[Photo],
    chosen: list[str],
    debs_dir: Path,
    download: bool,
    progress: bool,
    sizes: dict[str, DebPackage],
) -> dict:
    debs = _Debs(debs_dir)
    manifest: dict = {"packages": {}, "photos": []}
    bar = tqdm(total=len(photos), desc="photos", unit="photo", disable=not progress)
    with bar:
        for package in chosen:
            rows = [p for p in photos if p.package == package]
            size = sizes[package].deb_bytes if package in sizes else None
            found = debs.find(package, rows[0].version)
            if found is None and download:
                _download(package, debs_dir, size)
                debs.forget()
                found = debs.find(package, rows[0].version)
            if found is None:
                raise PhotoSourceError(
                    f"{package}: no .deb in {debs_dir}; " + _what_to_do(package, debs_dir, size)
                )
            deb, control = found
            bar.set_postfix_str(package)
            (tmp / package).mkdir()
            names = _file_names(rows)
            wanted: dict[str, list[_Target]] = {}
            for p in rows:
                wanted.setdefault(p.path, []).append(_Target(tmp / package / names[p.path], p))
            copyright_path = f"usr/share/doc/{package}/copyright"
            wanted.setdefault(copyright_path, []).append(_Target(tmp / package / "copyright"))
            try:
                _extract(deb, wanted)
            except _Unsupported as e:
                raise PhotoSourceError(f"{package}: {deb.name}: {e}") from None
            except _Missing as e:
                raise PhotoSourceError(
                    f"{package}: {deb.name} (version {control.version}) {e}; get version "
                    f"{rows[0].version} of {package} (e.g. from snapshot.debian.org) and put it "
                    f"in {debs_dir}"
                ) from None
            except (ValueError, tarfile.TarError, EOFError) as e:
                raise PhotoSourceError(
                    f"{package}: {deb.name} (version {control.version}): {e}; "
                    f"delete it and fetch {package} again (listed version {rows[0].version})"
                ) from None
            for p in rows:
                got = _hash(tmp / package / names[p.path])
                if got != p.sha256:
                    raise PhotoSourceError(
                        f"{package}: {p.source} in {deb.name} (version {control.version}) has "
                        f"sha256 {got}, the listing says {p.sha256}; get version {p.version} of "
                        f"{package} (e.g. from snapshot.debian.org) and put it in {debs_dir}"
                    )
                manifest["photos"].append(
                    {
                        "file": f"{package}/{names[p.path]}",
                        "package": package,
                        "version": control.version,
                        "sha256": p.sha256,
                        "width": p.width,
                        "height": p.height,
                        "license": p.license,
                        "source": p.source,
                    }
                )
                bar.update(1)
            manifest["packages"][package] = {
                "version": control.version,
                "listed_version": rows[0].version,
                "deb": deb.name,
                "deb_sha256": _hash(deb),
                "copyright": f"{package}/copyright",
            }
            log.info("%s %s: %d photos", package, control.version, len(rows))
    with atomic_write(tmp / "manifest.json") as f:
        f.write((json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def _replace_dir(new: Path, target: Path) -> None:
    """Put the folder `new` in place of `target`: the old one is moved aside first and removed
    only once the new one is in place."""
    os.chmod(new, 0o777 & ~_UMASK)  # mkdtemp makes it private; an output is not
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
    os.replace(target, old / target.name)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old / target.name, target)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _read_umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; done once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()
