"""Reading and writing the images users bring: 8/16-bit PNG, JPEG, TIFF, PPM/PGM, grayscale,
RGBA, palette, 1-bit and CMYK, with EXIF orientation applied; writes are atomic.

Pillow decodes everything 8-bit (it knows palettes, CMYK, EXIF and truncation); 16-bit PNG goes
through OpenCV, 16-bit TIFF through tifffile and 16-bit PPM/PGM through a reader of its own,
since Pillow reduces 16-bit colour to 8 bits. Only regular files are opened (a FIFO or a device
would block or never end). Of a multi-page or animated file the first page is read, and
`LoadedImage.warnings` says so. What the decoders print (libpng on stderr, tifffile's log) is
captured: it goes into the error message when decoding fails, and nowhere when it succeeds.

The metadata a photographer expects to keep travels with the pixels: the ICC colour profile and
the EXIF block (orientation reset to 1, since the pixels are upright once read), read on every
decode path and embedded by `write_image` in JPEG, PNG, TIFF and WebP. XMP, IPTC and Photoshop
resources are not carried.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import stat
import struct
import sys
import tempfile
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

from ..atomic import atomic_write

__all__ = ["ImageError", "LoadedImage", "read_image", "write_image"]

log = logging.getLogger(__name__)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_EXIF_ORIENTATION = 0x0112
_EXIF_HEADER = b"Exif\x00\x00"  # what precedes the TIFF-structured EXIF data in a JPEG APP1
_ICC_TAG = 34675  # TIFF InterColorProfile
_EXIF_IFD, _INTEROP_IFD = 0x8769, 0xA005
_XRESOLUTION, _YRESOLUTION, _RESOLUTION_UNIT = 282, 283, 296

# IFD0 tags that are not the photographer's EXIF: a TIFF source lists them beside Make, Model
# and DateTime, but they describe that file's pixel layout (wrong in any other file, and owned by
# the encoder), or are carried otherwise (ICC), or are other metadata this module does not carry
# (XMP, which may hold an orientation of its own; IPTC; Photoshop resources and layers; ImageJ).
_NOT_EXIF_TAGS = frozenset(
    {
        *(254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 277, 278, 279, 280, 281),
        *(284, 288, 289, 290, 291, 292, 293, 317, 320, 321, 322, 323, 324, 325, 330, 332, 334),
        *(338, 339, 340, 341, 347, 400, 512, 513, 514, 515, 517, 518, 519, 520, 521, 529, 530),
        *(532, 32997, 32998, _INTEROP_IFD),  # which belongs inside the Exif IFD
        _ICC_TAG,
        *(700, 33723, 34377, 37724, 50838, 50839),
    }
)


class ImageError(Exception):
    """An image cannot be read or written; the message starts with the file's path."""


@dataclass
class LoadedImage:
    """A decoded image, upright, as float32 in [0, 1], and what is needed to write it back alike."""

    rgb: np.ndarray  # (H, W, 3) float32; grayscale images are replicated to three channels
    alpha: np.ndarray | None  # (H, W) float32, carried through restoration untouched
    bit_depth: int  # 8 or 16: the depth the output is written with
    grayscale: bool
    format: str  # "PNG", "JPEG", "TIFF", ...
    # The ICC profile, kept only where it describes the decoded pixels' colour space (RGB, or
    # gray for grayscale): a CMYK or Lab profile would misdescribe the converted RGB.
    icc: bytes | None = None
    # EXIF as `PIL.Image.Exif.tobytes()` gives it ("Exif\0\0" + TIFF data), orientation reset
    # to 1, the source file's layout tags (and ICC, XMP, ...) left out; None when there is none.
    exif: bytes | None = None
    # what the user should know of the read: pages dropped, metadata not carried
    warnings: list[str] = field(default_factory=list)


_FILE_KINDS = {
    stat.S_ISFIFO: "a FIFO",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
}


# libpng (inside OpenCV) prints to file descriptor 2 with no hook to redirect it, so the only
# way to keep its words out of the user's terminal is to point fd 2 elsewhere while it runs.
# fd 2 is the process's: one decode at a time swaps it (this lock), so concurrent decodes each
# get their own messages and fd 2 always comes back; what another thread writes to fd 2 during
# a decode lands in that decode's messages (logged at debug level), not on the terminal.
_FD2 = threading.Lock()


@contextlib.contextmanager
def _captured() -> Iterator[list[str]]:
    """Collect what decoders say while the block runs, instead of letting it reach the user:
    C libraries' stderr (libpng), tifffile's log and Python warnings. The list fills when the
    block ends, before an exception leaves it. One thread at a time (_FD2)."""
    with _FD2:
        with _capturing() as said:
            yield said


@contextlib.contextmanager
def _capturing() -> Iterator[list[str]]:
    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    tiff_log = logging.getLogger("tifffile")
    propagate, tiff_log.propagate = tiff_log.propagate, False
    tiff_log.addHandler(handler)
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as err, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        os.dup2(err.fileno(), 2)
        try:
            yield said
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tiff_log.removeHandler(handler)
            tiff_log.propagate = propagate
            err.seek(0)
            # libpng ends its messages without a newline: split them apart too
            said += re.split(
                r"\n|(?=libpng (?:error|warning): )", err.read().decode(errors="replace")
            )
            said += [str(w.message) for w in caught]
            unique = dict.fromkeys(line.strip() for line in said if line.strip())
            said[:] = list(unique)


def _with_said(message: str, said: list[str]) -> str:
    """An error message with what the decoder said, in one line."""
    return f"{message}; the decoder said: {' / '.join(said)}" if said else message


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Decode `path`; any problem is an `ImageError` naming the file and what is wrong."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror or e})") from None
    if stat.S_ISDIR(mode):
        raise ImageError(f"{path}: is a directory, not an image")
    if not stat.S_ISREG(mode):
        kind = next((k for test, k in _FILE_KINDS.items() if test(mode)), "a special file")
        raise ImageError(f"{path}: not a regular file ({kind})")
    said: list[str] = []
    try:
        with open(path, "rb") as f:
            head = f.read(32)
        if not head:
            raise ImageError(f"{path}: empty file")
        with _captured() as said:
            img = _decode(path, head)
    except ImageError as e:
        raise ImageError(_with_said(str(e), said)) from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: too many pixels for a safe decode ({e})") from None
    except MemoryError:
        raise ImageError(f"{path}: not enough memory to decode this image") from None
    except OSError as e:
        if e.errno is not None:  # the file system's, not a decoder's
            raise ImageError(f"{path}: cannot read ({e.strerror or e})") from None
        raise ImageError(_with_said(f"{path}: cannot decode image data ({e})", said)) from None
    except Exception as e:  # decoders raise many types for corrupt data
        what = f"{path}: cannot decode image data ({type(e).__name__}: {e})"
        raise ImageError(_with_said(what, said)) from None
    for line in said:
        log.debug("%s: the decoder said: %s", path, line)
    return img


def _decode(path: Path, head: bytes) -> LoadedImage:
    if head.startswith(_PNG_SIGNATURE) and len(head) >= 26 and head[24] == 16:
        return _read_png16(path, color_type=head[25])
    if head[:4] in _TIFF_MAGIC and _tiff_bits(path) == 16:
        img = _read_tiff16(path)
    elif head[:2] in (b"P5", b"P6") and (pnm := _read_pnm16(path)) is not None:
        return pnm
    else:
        img = _read_pillow(path)
    if head[:4] in _TIFF_MAGIC[2:]:
        # Pillow parses classic TIFF headers only: what it makes of a BigTIFF's EXIF is not it
        img.exif = None
        with tifffile.TiffFile(path) as tf:
            if any(_photographers(t) for t in tf.pages.first.tags.values()):
                img.warnings.append(
                    "BigTIFF: its EXIF is not carried to the output (not supported)"
                )
    return img


def _photographers(tag: tifffile.TiffTag) -> bool:
    """A BigTIFF tag that is EXIF a camera or a photographer wrote, not the file's layout
    (_NOT_EXIF_TAGS), its resolution, or what tifffile stamps on every file it writes (its
    name as Software, the array's shape as a JSON ImageDescription)."""
    if tag.code in _NOT_EXIF_TAGS or tag.code in (_XRESOLUTION, _YRESOLUTION, _RESOLUTION_UNIT):
        return False
    value = str(tag.value)
    return not (
        (tag.code == 305 and value.startswith("tifffile"))
        or (tag.code == 270 and value.startswith('{"shape":'))
    )


def _pages(img: LoadedImage, n: int, fmt: str) -> LoadedImage:
    """Note that only the first of `n` pages or frames was read."""
    if n > 1:
        img.warnings.append(f"{fmt} with {n} pages or frames: only the first is restored")
    return img


def _tiff_bits(path: Path) -> int:
    with tifffile.TiffFile(path) as tf:
        bits = tf.pages.first.bitspersample
    if bits not in (1, 8, 16):
        raise ImageError(f"{path}: TIFF with {bits}-bit samples is not supported (8 or 16 bits)")
    return bits


def _to_float(a: np.ndarray, bits: int) -> np.ndarray:
    f = a.astype(np.float32)
    f /= np.float32(2**bits - 1)  # in place: a 4K image's second float copy is 0.1 GB
    return f


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 1..8 to an (H, W[, C]) array, as PIL.ImageOps.exif_transpose does."""
    t = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }.get(orientation, lambda a: a)
    return np.ascontiguousarray(t(a))


def _split(a: np.ndarray, bits: int, gray: bool, alpha: bool, fmt: str) -> LoadedImage:
    """(H, W), (H, W, 2), (H, W, 3) or (H, W, 4) integer array -> LoadedImage."""
    a = _to_float(a, bits)
    if a.ndim == 2:
        a = a[..., None]
    rgb = np.repeat(a[..., :1], 3, axis=2) if gray else a[..., :3]
    return LoadedImage(
        rgb=np.ascontiguousarray(rgb),
        alpha=np.ascontiguousarray(a[..., -1]) if alpha else None,
        bit_depth=bits,
        grayscale=gray,
        format=fmt,
    )


def _exif_bytes(exif: Image.Exif) -> bytes | None:
    """The photographer's part of `exif` (which this changes) as bytes, orientation reset to 1;
    None when nothing is left. The Exif and GPS IFDs are read through `exif`, so the file it was
    loaded from must still be open."""
    for tag in list(exif):
        if tag in _NOT_EXIF_TAGS or _encoder_stamp(tag, exif[tag]):
            del exif[tag]
    if not len(exif):
        return None
    if _EXIF_ORIENTATION in exif:
        exif[_EXIF_ORIENTATION] = 1
    try:
        return exif.tobytes()
    except Exception:  # e.g. Pillow closed a TIFF before its Interop IFD was read: do without
        exif.get_ifd(_EXIF_IFD).pop(_INTEROP_IFD, None)
        return exif.tobytes()


def _encoder_stamp(tag: int, value: object) -> bool:
    """What tifffile writes into every TIFF of its own accord: its name and its JSON shape."""
    if tag == 305:
        return value == "tifffile.py"
    if tag == 270 and isinstance(value, str):
        return value.startswith(('{"shape":', "shape=(", "ImageJ="))
    return False


def _with_metadata(img: LoadedImage, icc: bytes | None, exif: bytes | None) -> LoadedImage:
    # An ICC profile of another colour space than the pixels read (a CMYK one whose pixels were
    # converted naively to RGB, an RGB one on a grayscale image) would misdescribe them.
    space = b"GRAY" if img.grayscale else b"RGB "
    img.icc = icc if icc and icc[16:20] == space else None
    img.exif = exif
    return img


def _pillow_metadata(im: Image.Image) -> tuple[bytes | None, bytes | None]:
    """(ICC profile, EXIF bytes) of an opened image; damaged EXIF is dropped, not an error."""
    icc = im.info.get("icc_profile") or None
    try:
        exif = _exif_bytes(im.getexif())
    except Exception:
        exif = None
    return icc, exif


def _png16_header(path: Path) -> tuple[int, int, bytes | None, bytes | None, object]:
    """(EXIF orientation, frames, ICC, EXIF bytes, tRNS colour key or None) of a 16-bit PNG,
    through Pillow's chunk parsing."""
    try:
        with Image.open(path) as im:
            orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1))
            key = im.info.get("transparency")
            return orientation, getattr(im, "n_frames", 1), *_pillow_metadata(im), key
    except Exception:
        return 1, 1, None, None, None


def _tiff_exif(path: Path) -> bytes | None:
    """EXIF bytes from a TIFF's IFD0 (and its Exif and GPS IFDs), whatever its pixel format."""
    try:
        with open(path, "rb") as f:
            exif = Image.Exif()
            exif.load_from_fp(f)  # reads the header, then IFD0; BigTIFF is not understood
            return _exif_bytes(exif)
    except Exception:
        return None


def _read_pillow(path: Path) -> LoadedImage:
    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image, or a format this tool cannot read") from None
    with im:
        fmt = im.format or "?"
        frames = getattr(im, "n_frames", 1)
        im.load()  # decodes now: truncated or corrupt data fails here
        src, im = im, ImageOps.exif_transpose(im)
        icc, exif = _pillow_metadata(src)  # after the transpose: this edits src's EXIF
        mode = im.mode
        if mode == "P" or mode == "PA":
            im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
        elif mode in ("L", "RGB") and "transparency" in im.info:  # a tRNS colour key
            im = im.convert("LA" if mode == "L" else "RGBA")
        elif mode == "1":
            im = im.convert("L")
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        elif mode in ("I;16", "I;16L", "I;16B", "I;16N"):
            img = _split(np.asarray(im).astype(np.uint16), 16, True, False, fmt)
            return _pages(_with_metadata(img, icc, exif), frames, fmt)
        elif mode not in ("L", "LA", "RGB", "RGBA"):
            raise ImageError(f"{path}: pixel mode {mode!r} is not supported")
        a = np.asarray(im)
    mode = im.mode
    img = _split(a, 8, gray=mode in ("L", "LA"), alpha=mode in ("LA", "RGBA"), fmt=fmt)
    return _pages(_with_metadata(img, icc, exif), frames, fmt)


def _read_png16(path: Path, color_type: int) -> LoadedImage:
    a = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if a is None or a.dtype != np.uint16:
        raise ImageError(f"{path}: cannot decode 16-bit PNG data (corrupt or truncated)")
    gray = color_type in (0, 4)
    # OpenCV returns BGR(A); it expands gray+alpha, and an RGB tRNS colour key, to BGRA.
    alpha = a.ndim == 3 and a.shape[2] == 4
    if a.ndim == 3:
        a = a[..., [2, 1, 0, 3]] if alpha else a[..., ::-1]
        if gray:
            a = a[..., [0, 3]] if alpha else a[..., 0]
    orientation, frames, icc, exif, key = _png16_header(path)
    if gray and not alpha and isinstance(key, int):  # OpenCV ignores a gray tRNS key
        a = np.stack([a, np.where(a == key, 0, 65535).astype(np.uint16)], axis=-1)
        alpha = True
    img = _split(_orient(a, orientation), 16, gray, alpha, "PNG")
    return _pages(_with_metadata(img, icc, exif), frames, "PNG")


def _read_tiff16(path: Path) -> LoadedImage:
    with tifffile.TiffFile(path) as tf:
        page = tf.pages.first
        frames = len(tf.pages)
        a = page.asarray()
        photometric = int(page.photometric)
        axes = page.axes
        tag = page.tags.get(274)
        orientation = int(tag.value) if tag is not None else 1
        extra = len(page.extrasamples or ())
        tag = page.tags.get(_ICC_TAG)
        icc = bytes(tag.value) if tag is not None and isinstance(tag.value, bytes) else None
    if axes.startswith("S"):  # planar configuration: samples first
        a = np.moveaxis(a, 0, -1)
    if a.dtype != np.uint16:
        raise ImageError(f"{path}: 16-bit TIFF with sample type {a.dtype} is not supported")
    if photometric == 5:  # separated (CMYK): naive conversion, like Pillow's
        c, m, y, k = (a[..., i].astype(np.float64) / 65535 for i in range(4))
        rgb = np.stack([(1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k)], axis=-1)
        a = np.round(rgb * 65535).astype(np.uint16)
        extra = 0
    elif photometric not in (0, 1, 2):
        raise ImageError(f"{path}: 16-bit TIFF with photometric {photometric} is not supported")
    if photometric == 0:  # min-is-white: invert the colour samples, not the alpha
        a = a.copy()
        if a.ndim == 2:
            a = 65535 - a
        else:
            a[..., : a.shape[2] - extra] = 65535 - a[..., : a.shape[2] - extra]
    gray = a.ndim == 2 or a.shape[2] - extra == 1
    alpha = extra > 0
    img = _split(_orient(a, orientation), 16, gray, alpha, "TIFF")
    return _pages(_with_metadata(img, icc, _tiff_exif(path)), frames, "TIFF")


def _read_pnm16(path: Path) -> LoadedImage | None:
    """A binary PGM (P5) or PPM (P6) of more than 8 bits (maxval > 255, big-endian samples);
    None for an 8-bit one, which Pillow reads.

    Our own reader because Pillow reads a 16-bit PPM as 8-bit RGB, and OpenCV reads the raw
    samples without scaling a 10- or 12-bit one to the full range or refusing samples above
    maxval: for either, the header has to be parsed here anyway."""
    data = path.read_bytes()
    fields, at = [], 2
    while len(fields) < 3:  # width, height, maxval, separated by whitespace and # comments
        while at < len(data) and (data[at : at + 1].isspace() or data[at : at + 1] == b"#"):
            if data[at : at + 1] == b"#":
                at = data.find(b"\n", at) if b"\n" in data[at:] else len(data)
            at += 1
        start = at
        while at < len(data) and data[at : at + 1].isdigit():
            at += 1
        if start == at:
            raise ImageError(f"{path}: PNM header is damaged (expected width, height, maxval)")
        fields.append(int(data[start:at]))
    w, h, maxval = fields
    if maxval <= 255:
        return None
    if maxval > 65535 or not w or not h:
        raise ImageError(f"{path}: PNM header is damaged ({w}x{h}, maxval {maxval})")
    channels = 3 if data[:2] == b"P6" else 1
    need = w * h * channels * 2
    pixels = data[at + 1 : at + 1 + need]
    if len(pixels) < need:
        raise ImageError(f"{path}: truncated PNM data ({len(pixels)} of {need} bytes)")
    a = np.frombuffer(pixels, ">u2").reshape(h, w, channels)
    if int(a.max(initial=0)) > maxval:
        raise ImageError(f"{path}: PNM sample above its maxval {maxval}")
    if maxval != 65535:  # a 10- or 12-bit PNM: to the full 16-bit range
        a = np.round(a.astype(np.float64) * (65535 / maxval))
    a = a.astype(np.uint16)
    return _split(a[..., 0] if channels == 1 else a, 16, channels == 1, False, "PPM")


# --- writing -------------------------------------------------------------------------------


def _quantize(a: np.ndarray, bits: int) -> np.ndarray:
    q = np.clip(a, 0.0, 1.0)  # the one float copy: scaled and rounded in place
    q *= 2**bits - 1
    return np.round(q, out=q).astype(np.uint16 if bits == 16 else np.uint8)


def write_image(
    path: str | os.PathLike,
    rgb: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    bit_depth: int = 8,
    grayscale: bool = False,
    icc: bytes | None = None,
    exif: bytes | None = None,
    replace: bool = True,
    format: str | None = None,
) -> list[str]:
    """Encode (H, W, 3) float `rgb` in [0, 1] to `path`, atomically; -> what could not be
    written as asked (alpha, metadata), one line each. The format is its suffix's, else
    `format` (a Pillow format name, e.g. the input's `LoadedImage.format`, for a name such as
    `scan_0001` or `photo.jpg_large`); MPO (stereo JPEG) is written as its first image, a JPEG.
    `replace=False`: FileExistsError, and the file kept, when `path` exists by the time it is
    written.

    16-bit needs PNG, TIFF or PPM/PGM; JPEG and PPM/PGM have no alpha, so alpha is dropped
    there.

    `icc` (an ICC profile; it should match the colour space written: gray when `grayscale`, else
    RGB) and `exif` (EXIF bytes as `LoadedImage.exif` holds them) are embedded, as they are, in
    JPEG (any suffix: .jpg, .jpeg, .jpe, .jfif; APP2/APP1), PNG 8- and 16-bit (iCCP/eXIf
    chunks), WebP and AVIF, and TIFF 8- and 16-bit (tag 34675; EXIF as IFD0 tags with the Exif
    and GPS IFDs, except in a BigTIFF, which tifffile writes only past 4 GiB and which then gets
    no EXIF). Other formats (BMP, GIF, PPM, ...) get neither, and neither does a gray profile
    when 16-bit gray with alpha is written as RGBA PNG (OpenCV writes no gray+alpha; PNG allows
    no gray profile on RGBA). The pixels are written as given, so `exif`'s orientation must
    describe them: `read_image` resets it to 1. A TIFF's own layout tags always come from the
    encoder, never from `exif`; Pillow may re-type odd tags and drops the thumbnail IFD when it
    re-serialises EXIF.
    """
    path = Path(path)
    ext = path.suffix.lower()
    fmt = _format(path, ext, format)
    icc, exif = icc or None, _exif_block(exif)
    _check_request(path, fmt, rgb, bit_depth)
    notes = []
    if alpha is not None and fmt in ("JPEG", "PPM"):
        alpha = None  # no alpha channel in the format: the colour is still worth writing
        notes.append(f"{fmt} has no alpha channel: the alpha is not written")
    if (icc or exif) and fmt not in _METADATA_FORMATS:
        notes.append(f"{fmt} cannot hold the ICC profile or EXIF: they are not written")
    samples = _samples(rgb, alpha, bit_depth, grayscale)
    try:
        data = _encode(path, fmt, samples, bit_depth, icc, exif)
    except _ExifError as e:
        data = _encode(path, fmt, samples, bit_depth, icc, None)
        notes.append(f"the EXIF is not written: {e}")
    with atomic_write(path, replace=replace) as f:
        f.write(data)
    return notes


_METADATA_FORMATS = {"JPEG", "PNG", "WEBP", "AVIF", "TIFF"}


class _ExifError(ValueError):
    """EXIF bytes the TIFF writer cannot re-lay: the image is written without them."""


def _exif_block(exif: bytes | None) -> bytes | None:
    """EXIF with the "Exif\\0\\0" header in front: what JPEG's APP1 needs, and what the other
    encoders strip or accept; raw TIFF-structured EXIF gets it added."""
    if not exif:
        return None
    return exif if exif.startswith(_EXIF_HEADER) else _EXIF_HEADER + exif


def _format(path: Path, ext: str, fallback: str | None) -> str:
    """The Pillow format name to write `path` in: its suffix's, else `fallback`."""
    known = fallback if fallback and fallback != "?" else None  # "?": Pillow did not say
    fmt = Image.registered_extensions().get(ext) or (known or "").upper() or None
    if fmt is None:
        raise ImageError(f"{path}: no image format for {ext or 'a name without a suffix'}")
    return "JPEG" if fmt == "MPO" else fmt  # one image of an MPO is a JPEG file


def _check_request(path: Path, fmt: str, rgb: np.ndarray, bit_depth: int) -> None:
    """Refuse, before encoding anything, what no encoder here can write."""
    if bit_depth not in (8, 16):
        raise ImageError(f"{path}: bit depth must be 8 or 16, got {bit_depth}")
    if bit_depth == 16 and fmt not in ("PNG", "TIFF", "PPM"):
        raise ImageError(f"{path}: 16-bit output needs a .png, .tif, .ppm or .pgm file")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"{path}: expected an (H, W, 3) array, got shape {rgb.shape}")


def _samples(rgb: np.ndarray, alpha: np.ndarray | None, bits: int, grayscale: bool) -> np.ndarray:
    """The integers to encode: (H, W) gray, (H, W, 2) gray+alpha, (H, W, 3) or (H, W, 4)."""
    color = rgb.mean(axis=2, keepdims=True) if grayscale else rgb
    if alpha is not None:
        color = np.concatenate([color, alpha[..., None]], axis=2)
    a = _quantize(color, bits)
    return a[..., 0] if a.shape[2] == 1 else a


def _encode(
    path: Path, fmt: str, a: np.ndarray, bits: int, icc: bytes | None, exif: bytes | None
) -> bytes:
    """The file's bytes in format `fmt`; an encoder's complaint is an ImageError naming `path`."""
    try:
        if fmt == "TIFF":
            return _encode_tiff(a, icc, exif)
        if fmt == "PNG" and bits == 16:  # Pillow writes no 16-bit colour PNG
            return _encode_png16(path, a, icc, exif)
        if fmt == "PPM" and bits == 16:  # nor 16-bit PPM
            return _encode_pnm16(a)
        return _encode_pillow(fmt, a, icc, exif)
    except (ImageError, _ExifError):
        raise
    except (KeyError, ValueError, OSError) as e:
        raise ImageError(f"{path}: cannot encode as {fmt} ({e})") from None


def _encode_tiff(a: np.ndarray, icc: bytes | None, exif: bytes | None) -> bytes:
    gray_like = a.ndim == 2 or a.shape[2] == 2
    has_alpha = a.ndim == 3 and a.shape[2] in (2, 4)
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        a,
        photometric="minisblack" if gray_like else "rgb",
        extrasamples=["unassalpha"] if has_alpha else None,
        extratags=[(_ICC_TAG, 7, None, icc, True)] if icc else None,  # 7: UNDEFINED
    )
    return _tiff_with_exif(buf.getvalue(), exif) if exif else buf.getvalue()


def _encode_png16(path: Path, a: np.ndarray, icc: bytes | None, exif: bytes | None) -> bytes:
    if a.ndim == 3 and a.shape[2] == 2:  # OpenCV writes no gray+alpha: use RGBA
        a = a[..., [0, 0, 0, 1]]
        if icc and icc[16:20] == b"GRAY":
            icc = None  # PNG allows no gray profile on RGBA: it would be ignored
    if a.ndim == 3:  # OpenCV takes BGR(A)
        a = a[..., [2, 1, 0, 3]] if a.shape[2] == 4 else a[..., ::-1]
    ok, enc = cv2.imencode(".png", np.ascontiguousarray(a))
    if not ok:
        raise ImageError(f"{path}: PNG encoder failed")
    return _png_with_metadata(enc.tobytes(), icc, exif)


def _encode_pnm16(a: np.ndarray) -> bytes:
    """Binary PGM (gray) or PPM, maxval 65535, big-endian samples."""
    h, w = a.shape[:2]
    magic = b"P5" if a.ndim == 2 else b"P6"
    return magic + f"\n{w} {h}\n65535\n".encode() + a.astype(">u2").tobytes()


def _encode_pillow(fmt: str, a: np.ndarray, icc: bytes | None, exif: bytes | None) -> bytes:
    # 4:4:4 chroma: a restored image should not lose colour detail on the way out
    kwargs = {
        "JPEG": {"quality": 95, "subsampling": 0},
        "AVIF": {"quality": 95, "subsampling": "4:4:4"},
        "WEBP": {"lossless": True},
    }.get(fmt, {})
    if fmt in _METADATA_FORMATS:
        kwargs |= {"icc_profile": icc} if icc else {}
        kwargs |= {"exif": exif} if exif else {}
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png_with_metadata(png: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    """`png` with iCCP and eXIf chunks after its IHDR, as Pillow writes them for 8-bit PNG."""
    ihdr_end = len(_PNG_SIGNATURE) + 8 + 13 + 4  # length, type, 13 bytes of data, CRC
    if png[12:16] != b"IHDR":
        raise ValueError("the PNG encoder wrote no IHDR first")
    chunks = b""
    if icc:  # profile name, NUL, compression method 0 (zlib), compressed profile
        chunks += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))
    if exif:  # the TIFF-structured data, without JPEG's "Exif\0\0"
        chunks += _png_chunk(b"eXIf", exif.removeprefix(_EXIF_HEADER))
    return png[:ihdr_end] + chunks + png[ihdr_end:]


def _ifd_entries(data: bytes, at: int) -> dict[int, bytes]:
    """The raw 12-byte entries, by tag, of the little-endian classic TIFF IFD at offset `at`."""
    (n,) = struct.unpack_from("<H", data, at)
    entries = (data[at + 2 + 12 * i : at + 14 + 12 * i] for i in range(n))
    return {struct.unpack_from("<H", e)[0]: e for e in entries}


def _tiff_with_exif(tiff: bytes, exif: bytes) -> bytes:
    """`tiff` (one page, as tifffile writes it) with `exif`'s tags in its IFD0 and its Exif and GPS
    IFDs; tifffile cannot write those IFDs itself (it drops the tags that point to them), and
    Pillow, which can, writes no 16-bit RGB TIFF.

    Pillow lays the EXIF directory out for the place it gets at the end of the file, its Exif and
    GPS IFDs and values after it, so all its offsets hold there; then IFD0 is rewritten after that,
    its entries and EXIF's merged (EXIF's win, but never over the layout tags, which
    `_NOT_EXIF_TAGS` keeps out), and the header pointed at it. The old IFD0 stays, unreferenced.
    """
    if tiff[:4] != b"II*\x00":
        return tiff  # a BigTIFF (data past 4 GiB): write_image's docstring says it gets no EXIF
    start = (len(tiff) + 3) // 4 * 4
    try:
        e = Image.Exif()
        e.load(exif)
        e.endian = "<"  # re-encoded in the file's byte order (values are read in the old one)
        for tag in list(e):
            if tag in _NOT_EXIF_TAGS:
                del e[tag]
        block = e.tobytes(start)[len(_EXIF_HEADER) + 8 :]  # less the 8-byte TIFF header
        theirs = _ifd_entries(block, 0)
    except Exception as err:  # Pillow raises many types for damaged EXIF
        raise _ExifError(f"unreadable EXIF data ({type(err).__name__}: {err})") from None
    (first,) = struct.unpack_from("<I", tiff, 4)
    ours = _ifd_entries(tiff, first)
    end = first + 2 + 12 * struct.unpack_from("<H", tiff, first)[0]
    next_ifd = tiff[end : end + 4]
    if theirs.keys() & {_XRESOLUTION, _YRESOLUTION} and _RESOLUTION_UNIT not in theirs:
        ours.pop(_RESOLUTION_UNIT, None)  # tifffile's "no unit"; EXIF's default is inches
    merged = ours | theirs
    at = (start + len(block) + 3) // 4 * 4
    ifd0 = struct.pack("<H", len(merged)) + b"".join(merged[t] for t in sorted(merged)) + next_ifd
    out = bytearray(tiff)
    out[4:8] = struct.pack("<I", at)
    out += bytes(start - len(tiff)) + block + bytes(at - start - len(block)) + ifd0
    return bytes(out)
