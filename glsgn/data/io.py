"""Reading and writing the images users bring: 8/16-bit PNG, JPEG, TIFF, grayscale, RGBA,
palette and CMYK, with EXIF orientation applied; writes are atomic.

Pillow decodes everything 8-bit (it knows palettes, CMYK, EXIF and truncation); 16-bit PNG goes
through OpenCV and 16-bit TIFF through tifffile, since Pillow reduces 16-bit colour to 8 bits.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

from ..atomic import atomic_write

__all__ = ["ImageError", "LoadedImage", "read_image", "write_image"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_EXIF_ORIENTATION = 0x0112


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


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Decode `path`; any problem is an `ImageError` naming the file and what is wrong."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image")
    with open(path, "rb") as f:
        head = f.read(32)
    if not head:
        raise ImageError(f"{path}: empty file")
    try:
        if head.startswith(_PNG_SIGNATURE) and len(head) >= 26 and head[24] == 16:
            return _read_png16(path, color_type=head[25])
        if head[:4] in _TIFF_MAGIC and _tiff_bits(path) == 16:
            return _read_tiff16(path)
        return _read_pillow(path)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: too many pixels for a safe decode ({e})") from None
    except MemoryError:
        raise ImageError(f"{path}: not enough memory to decode this image") from None
    except Exception as e:  # decoders raise many types for corrupt data
        raise ImageError(f"{path}: cannot decode image data ({type(e).__name__}: {e})") from None


def _tiff_bits(path: Path) -> int:
    with tifffile.TiffFile(path) as tf:
        bits = tf.pages.first.bitspersample
    if bits not in (1, 8, 16):
        raise ImageError(f"{path}: TIFF with {bits}-bit samples is not supported (8 or 16 bits)")
    return bits


def _to_float(a: np.ndarray, bits: int) -> np.ndarray:
    return a.astype(np.float32) / np.float32(2**bits - 1)


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


def _pillow_orientation(path: Path) -> int:
    try:
        with Image.open(path) as im:
            return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:
        return 1


def _read_pillow(path: Path) -> LoadedImage:
    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image, or a format this tool cannot read") from None
    with im:
        fmt = im.format or "?"
        im.load()  # decodes now: truncated or corrupt data fails here
        im = ImageOps.exif_transpose(im)
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
            return _split(np.asarray(im).astype(np.uint16), 16, True, False, fmt)
        elif mode not in ("L", "LA", "RGB", "RGBA"):
            raise ImageError(f"{path}: pixel mode {mode!r} is not supported")
        a = np.asarray(im)
    mode = im.mode
    return _split(a, 8, gray=mode in ("L", "LA"), alpha=mode in ("LA", "RGBA"), fmt=fmt)


def _read_png16(path: Path, color_type: int) -> LoadedImage:
    a = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if a is None or a.dtype != np.uint16:
        raise ImageError(f"{path}: cannot decode 16-bit PNG data (corrupt or truncated)")
    gray = color_type in (0, 4)
    # OpenCV returns BGR(A); it expands gray+alpha, and a tRNS colour key, to BGRA.
    alpha = a.ndim == 3 and a.shape[2] == 4
    if a.ndim == 3:
        a = a[..., [2, 1, 0, 3]] if alpha else a[..., ::-1]
        if gray:
            a = a[..., [0, 3]] if alpha else a[..., 0]
    return _split(_orient(a, _pillow_orientation(path)), 16, gray, alpha, "PNG")


def _read_tiff16(path: Path) -> LoadedImage:
    with tifffile.TiffFile(path) as tf:
        page = tf.pages.first
        a = page.asarray()
        photometric = int(page.photometric)
        axes = page.axes
        tag = page.tags.get(274)
        orientation = int(tag.value) if tag is not None else 1
        extra = len(page.extrasamples or ())
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
    return _split(_orient(a, orientation), 16, gray, alpha, "TIFF")


# --- writing -------------------------------------------------------------------------------


def _quantize(a: np.ndarray, bits: int) -> np.ndarray:
    top = 2**bits - 1
    return np.round(np.clip(a, 0.0, 1.0) * top).astype(np.uint16 if bits == 16 else np.uint8)


def write_image(
    path: str | os.PathLike,
    rgb: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    bit_depth: int = 8,
    grayscale: bool = False,
) -> None:
    """Encode (H, W, 3) float `rgb` in [0, 1] to `path` (format from its suffix), atomically.

    16-bit needs PNG or TIFF; JPEG has no alpha, so alpha is dropped there.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if bit_depth not in (8, 16):
        raise ImageError(f"{path}: bit depth must be 8 or 16, got {bit_depth}")
    if bit_depth == 16 and ext not in (".png", ".tif", ".tiff"):
        raise ImageError(f"{path}: 16-bit output needs a .png or .tif file")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"{path}: expected an (H, W, 3) array, got shape {rgb.shape}")
    color = rgb.mean(axis=2, keepdims=True) if grayscale else rgb
    if alpha is not None and ext not in (".jpg", ".jpeg"):
        color = np.concatenate([color, alpha[..., None]], axis=2)
    a = _quantize(color, bit_depth)
    if a.shape[2] == 1:
        a = a[..., 0]
    buf = io.BytesIO()
    try:
        if ext in (".tif", ".tiff"):
            gray_like = a.ndim == 2 or a.shape[2] == 2
            tifffile.imwrite(
                buf,
                a,
                photometric="minisblack" if gray_like else "rgb",
                extrasamples=["unassalpha"] if alpha is not None else None,
            )
        elif ext == ".png" and bit_depth == 16:
            if a.ndim == 3 and a.shape[2] == 2:  # OpenCV writes no gray+alpha: use RGBA
                a = a[..., [0, 0, 0, 1]]
            bgr = (
                a[..., [2, 1, 0, 3]]
                if a.ndim == 3 and a.shape[2] == 4
                else (a[..., ::-1] if a.ndim == 3 else a)
            )
            ok, enc = cv2.imencode(".png", np.ascontiguousarray(bgr))
            if not ok:
                raise ImageError(f"{path}: PNG encoder failed")
            buf.write(enc.tobytes())
        else:
            # 4:4:4 chroma: a restored image should not lose colour detail on the way out
            kwargs = {
                ".jpg": {"quality": 95, "subsampling": 0},
                ".jpeg": {"quality": 95, "subsampling": 0},
                ".webp": {"lossless": True},
            }.get(ext, {})
            Image.fromarray(a).save(buf, format=Image.registered_extensions().get(ext), **kwargs)
    except ImageError:
        raise
    except (KeyError, ValueError, OSError) as e:
        raise ImageError(
            f"{path}: cannot encode as {ext or 'an image (no suffix)'} ({e})"
        ) from None
    with atomic_write(path) as f:
        f.write(buf.getvalue())
