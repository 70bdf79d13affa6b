"""Every kind of image a user may bring, through glsgn.data.io and the `glsgn restore` CLI.

An identity checkpoint (no pyramid, and B_1 = input at initialisation: B_out = input) makes
the CLI's output comparable with its input bit for bit, so these tests see exactly what IO does.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, ImageOps

from glsgn.cli import main
from glsgn.data.io import ImageError, read_image, write_image

RNG = np.random.default_rng(0)
H, W = 37, 53


def _cli(inputs, outdir, ckpt, *flags) -> int:
    """`glsgn restore INPUTS -o OUTDIR --checkpoint CKPT --quiet FLAGS`, in process."""
    args = ["restore", *map(str, inputs), "-o", str(outdir), "--checkpoint", str(ckpt)]
    return main([*args, "--quiet", *flags])


def _u8(*shape):
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def _u16(*shape):
    return RNG.integers(0, 65536, size=shape, dtype=np.uint16)


ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
CAMERA = {0x010F: "GLSGN Optics", 0x0110: "Test Body 1", 0x0132: "2024:05:06 07:08:09"}
SHOT = {0x9003: "2024:05:06 07:08:09", 0x8827: 400}  # DateTimeOriginal, ISO: in the Exif IFD


def _exif(orientation: int, *, camera: bool = False) -> bytes:
    """EXIF with `orientation`; with `camera`, also Make/Model/DateTime and an Exif IFD."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    if camera:
        exif.update(CAMERA)
        exif[0x8769] = dict(SHOT)
    return exif.tobytes()


def _icc_as(space: bytes) -> bytes:
    """The sRGB profile, its header saying colour space `space` (all that read_image checks)."""
    return ICC[:16] + space + ICC[20:]


def _png_with_chunks(data: bytes, *chunks: tuple[bytes, bytes]) -> bytes:
    """PNG `data` with (type, payload) chunks inserted right after its IHDR."""
    ihdr_end = 8 + 8 + 13 + 4
    raw = b"".join(
        struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d)) for k, d in chunks
    )
    return data[:ihdr_end] + raw + data[ihdr_end:]


def _file_metadata(path) -> tuple[bytes | None, dict, dict]:
    """(ICC, IFD0 tags, Exif IFD tags) of a file as other readers see them, keyed by tag code:
    tifffile for TIFF (it checks write_image's own TIFF assembly), Pillow for the rest."""
    if path.suffix == ".tif":
        with tifffile.TiffFile(path) as tf:
            tags = tf.pages.first.tags
            icc = tags[34675].value if 34675 in tags else None
            ifd0 = {t.code: t.value for t in tags.values()}
            sub = ifd0.pop(34665, {})
            return icc, ifd0, {tifffile.TIFF.EXIF_TAGS[k]: v for k, v in sub.items()}
    with Image.open(path) as im:
        exif = im.getexif()
        return im.info.get("icc_profile"), dict(exif), dict(exif.get_ifd(0x8769))


# name -> (writer(path), expected pixels as read back upright, bit depth, gray, alpha)
def _cases():
    rgb8, gray8, rgba8, la8 = _u8(H, W, 3), _u8(H, W), _u8(H, W, 4), _u8(H, W, 2)
    rgb16, gray16, rgba16 = _u16(H, W, 3), _u16(H, W), _u16(H, W, 4)
    palette = _u8(H, W) % 16
    pal_colors = _u8(16, 3)
    cmyk = _u8(H, W, 4)

    def pil(arr, mode=None, **kw):
        return lambda p: (
            Image.fromarray(arr, mode).save(p, **kw) if mode else Image.fromarray(arr).save(p, **kw)
        )

    def pal(p, transparent=False):
        im = Image.fromarray(palette, "P")
        im.putpalette(pal_colors.flatten().tolist())
        im.save(p, **({"transparency": 3} if transparent else {}))

    pal_rgb = pal_colors[palette]
    pal_rgba = np.concatenate([pal_rgb, np.where(palette == 3, 0, 255)[..., None]], 2).astype(
        np.uint8
    )

    def cv2_write(arr):
        def w(p):
            bgr = (
                arr[..., [2, 1, 0, 3]]
                if arr.ndim == 3 and arr.shape[2] == 4
                else (arr[..., ::-1] if arr.ndim == 3 else arr)
            )
            assert cv2.imwrite(str(p), np.ascontiguousarray(bgr))

        return w

    rot = np.rot90(rgb16, -1)  # EXIF orientation 6: rotate 90 degrees clockwise
    return {
        "rgb8.png": (pil(rgb8), rgb8, 8, False, False),
        "gray8.png": (pil(gray8), gray8, 8, True, False),
        "rgba8.png": (pil(rgba8), rgba8, 8, False, True),
        "la8.png": (pil(la8, "LA"), la8, 8, True, True),
        "palette.png": (pal, pal_rgb, 8, False, False),
        "palette_transparent.png": (lambda p: pal(p, True), pal_rgba, 8, False, True),
        "rgb16.png": (cv2_write(rgb16), rgb16, 16, False, False),
        "gray16.png": (cv2_write(gray16), gray16, 16, True, False),
        "rgba16.png": (cv2_write(rgba16), rgba16, 16, False, True),
        "rgb8.tif": (lambda p: tifffile.imwrite(p, rgb8, photometric="rgb"), rgb8, 8, False, False),
        "rgb16.tif": (
            lambda p: tifffile.imwrite(p, rgb16, photometric="rgb"),
            rgb16,
            16,
            False,
            False,
        ),
        "gray16.tif": (
            lambda p: tifffile.imwrite(p, gray16, photometric="minisblack"),
            gray16,
            16,
            True,
            False,
        ),
        "rgba16.tif": (
            lambda p: tifffile.imwrite(p, rgba16, photometric="rgb", extrasamples=["unassalpha"]),
            rgba16,
            16,
            False,
            True,
        ),
        "rot16.tif": (
            lambda p: tifffile.imwrite(
                p, rgb16, photometric="rgb", extratags=[(274, "H", 1, 6, False)]
            ),
            rot,
            16,
            False,
            False,
        ),
        "cmyk.tif": (
            pil(cmyk, "CMYK"),
            np.asarray(Image.fromarray(cmyk, "CMYK").convert("RGB")),
            8,
            False,
            False,
        ),
    }


CASES = _cases()


@pytest.mark.parametrize("name", CASES)
def test_read_then_write_round_trips_exactly(tmp_path, name):
    writer, expected, bits, gray, alpha = CASES[name]
    src = tmp_path / name
    writer(src)
    img = read_image(src)
    assert (img.bit_depth, img.grayscale, img.alpha is not None) == (bits, gray, alpha)
    top = 2**bits - 1
    color = expected if expected.ndim == 2 else expected[..., : (1 if gray else 3)]
    got = img.rgb[..., 0] if gray else img.rgb
    np.testing.assert_array_equal(np.round(got * top), color.squeeze().astype(np.float64))
    if alpha:
        np.testing.assert_array_equal(np.round(img.alpha * top), expected[..., -1])
    dst = tmp_path / ("out_" + name)
    write_image(dst, img.rgb, alpha=img.alpha, bit_depth=bits, grayscale=gray)
    again = read_image(dst)
    np.testing.assert_array_equal(again.rgb, img.rgb)
    assert (again.bit_depth, again.grayscale) == (bits, gray)


@pytest.mark.parametrize("name", CASES)
def test_cli_identity_restore_preserves_every_kind(tmp_path, identity_ckpt, name):
    writer, *_ = CASES[name]
    src = tmp_path / "in" / name
    src.parent.mkdir()
    writer(src)
    rc = _cli([src], tmp_path / "out", identity_ckpt)
    assert rc == 0
    a, b = read_image(src), read_image(tmp_path / "out" / name)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    assert (a.bit_depth, a.grayscale) == (b.bit_depth, b.grayscale)
    if a.alpha is not None:
        np.testing.assert_array_equal(a.alpha, b.alpha)


def test_jpeg_exif_orientation_and_cmyk(tmp_path, identity_ckpt):
    arr = _u8(40, 64, 3)
    Image.fromarray(arr).save(tmp_path / "rot.jpg", exif=_exif(6), quality=100)
    Image.fromarray(_u8(40, 64, 4), "CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    for name in ("rot.jpg", "cmyk.jpg"):
        with Image.open(tmp_path / name) as im:
            ref = np.asarray(ImageOps.exif_transpose(im).convert("RGB")) / 255.0
        img = read_image(tmp_path / name)
        assert img.rgb.shape == ref.shape and img.bit_depth == 8
        np.testing.assert_allclose(img.rgb, ref, atol=1e-6)
    assert read_image(tmp_path / "rot.jpg").rgb.shape == (64, 40, 3)  # upright: portrait
    rc = _cli([tmp_path / "rot.jpg", tmp_path / "cmyk.jpg"], tmp_path / "out", identity_ckpt)
    assert rc == 0
    out = read_image(tmp_path / "out" / "rot.jpg")
    assert out.rgb.shape == (64, 40, 3)
    with Image.open(tmp_path / "out" / "rot.jpg") as im:
        assert im.getexif().get(0x0112, 1) == 1  # pixels upright, no rotation left to apply
    assert np.abs(out.rgb - read_image(tmp_path / "rot.jpg").rgb).mean() < 0.02  # JPEG re-encode


def test_transparency_keys_min_is_white_lzw_and_lossless_webp(tmp_path):
    rgb = _u8(H, W, 3)
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "key8.png", transparency=(1, 2, 3))
    img = read_image(tmp_path / "key8.png")
    assert img.alpha is not None and img.alpha[0, 0] == 0 and img.alpha.mean() > 0.99

    rgb16 = _u16(H, W, 3)
    rgb16[1, 1] = (7, 8, 9)
    cv2.imwrite(str(tmp_path / "key16.png"), np.ascontiguousarray(rgb16[..., ::-1]))
    data = (tmp_path / "key16.png").read_bytes()
    payload = b"tRNS" + np.array([7, 8, 9], ">u2").tobytes()
    import zlib

    chunk = (6).to_bytes(4, "big") + payload + zlib.crc32(payload).to_bytes(4, "big")
    ihdr_end = 8 + 8 + 13 + 4
    (tmp_path / "key16.png").write_bytes(data[:ihdr_end] + chunk + data[ihdr_end:])
    img = read_image(tmp_path / "key16.png")
    assert img.bit_depth == 16 and img.alpha[1, 1] == 0 and img.alpha.mean() > 0.99
    np.testing.assert_array_equal(np.round(img.rgb * 65535), rgb16)

    ga = _u16(H, W, 2)
    tifffile.imwrite(
        tmp_path / "white.tif", ga, photometric="miniswhite", extrasamples=["unassalpha"]
    )
    img = read_image(tmp_path / "white.tif")
    np.testing.assert_array_equal(np.round(img.rgb[..., 0] * 65535), 65535 - ga[..., 0])
    np.testing.assert_array_equal(np.round(img.alpha * 65535), ga[..., 1])

    tifffile.imwrite(tmp_path / "lzw.tif", rgb16, photometric="rgb", compression="lzw")
    np.testing.assert_array_equal(np.round(read_image(tmp_path / "lzw.tif").rgb * 65535), rgb16)

    write_image(tmp_path / "out.webp", rgb / 255.0)
    np.testing.assert_array_equal(np.round(read_image(tmp_path / "out.webp").rgb * 255), rgb)


def _bad_files(tmp_path):
    good = io.BytesIO()
    Image.fromarray(_u8(64, 64, 3)).save(good, format="PNG")
    jpg = io.BytesIO()
    Image.fromarray(_u8(64, 64, 3)).save(jpg, format="JPEG")
    files = {
        "truncated.png": good.getvalue()[: len(good.getvalue()) // 2],
        "truncated.jpg": jpg.getvalue()[: len(jpg.getvalue()) // 2],
        "corrupt.png": good.getvalue()[:40] + b"\x00" * 400,
        "notes.jpg": b"this is text, not a picture\n",
        "empty.png": b"",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "folder.png").mkdir()
    return [tmp_path / n for n in files] + [tmp_path / "folder.png", tmp_path / "missing.png"]


def test_bad_files_are_clear_errors_naming_the_file(tmp_path):
    for path in _bad_files(tmp_path):
        with pytest.raises(ImageError) as e:
            read_image(path)
        assert str(e.value).startswith(str(path)), str(e.value)


def test_huge_image_is_a_clear_error(tmp_path, monkeypatch):
    Image.fromarray(_u8(64, 64, 3)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match="too many pixels"):
        read_image(tmp_path / "big.png")


def test_cli_batch_goes_on_past_bad_files(tmp_path, random_ckpt, capsys):
    bad = _bad_files(tmp_path)
    good = tmp_path / "good.png"
    Image.fromarray(_u8(50, 70, 3)).save(good)
    out = tmp_path / "out"
    rc = _cli([*bad, good], out, random_ckpt)
    err = capsys.readouterr().err
    assert rc == 1
    for path in bad:
        assert f"error: {path}:" in err
    restored = read_image(out / "good.png")
    assert restored.rgb.shape == (50, 70, 3)
    assert np.abs(restored.rgb - read_image(good).rgb).max() > 0  # the random model did something
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]  # nothing else, no temp files


def test_cli_never_overwrites_inputs_or_outputs(tmp_path, identity_ckpt, capsys):
    src = tmp_path / "a.png"
    Image.fromarray(_u8(20, 20, 3)).save(src)
    before = src.read_bytes()
    assert _cli([src], tmp_path, identity_ckpt) == 1  # would overwrite the input
    assert "overwrite an input" in capsys.readouterr().err
    assert _cli([src], tmp_path, identity_ckpt, "--overwrite") == 1
    assert src.read_bytes() == before

    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"keep me")
    assert _cli([src], out, identity_ckpt) == 1
    assert "exists (use --overwrite" in capsys.readouterr().err
    assert (out / "a.png").read_bytes() == b"keep me"
    assert _cli([src], out, identity_ckpt, "--overwrite") == 0
    assert read_image(out / "a.png").rgb.shape == (20, 20, 3)

    other = tmp_path / "sub" / "a.png"
    other.parent.mkdir()
    other.write_bytes(before)
    assert _cli([src, other], tmp_path / "o2", identity_ckpt) == 1
    assert "already the output of" in capsys.readouterr().err


def test_cli_bad_checkpoint_and_arguments(tmp_path, capsys):
    (tmp_path / "x.pt").write_text("nope")
    src = tmp_path / "a.png"
    Image.fromarray(_u8(8, 8, 3)).save(src)
    assert (
        main(
            ["restore", str(src), "-o", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "x.pt")]
        )
        == 2
    )
    assert f"{tmp_path / 'x.pt'}: not a readable checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["restore", str(src), "-o", "o", "--checkpoint", "c", "--patch-size", "zero"])
    assert "expected a positive integer" in capsys.readouterr().err


def test_python_dash_m_entry_point(tmp_path, identity_ckpt):
    src = tmp_path / "a.tif"
    tifffile.imwrite(src, _u16(24, 40, 3), photometric="rgb")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "glsgn",
            "restore",
            str(src),
            "-o",
            str(tmp_path / "out"),
            "--checkpoint",
            str(identity_ckpt),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "restored 1 of 1" in r.stderr and "device cpu" in r.stderr
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "a.tif").rgb, read_image(src).rgb)


# --- ICC profile and EXIF ------------------------------------------------------------------


def _png16_with_metadata(p, raw, exif):
    assert cv2.imwrite(str(p), np.ascontiguousarray(raw[..., ::-1]))
    iccp = b"ICC Profile\x00\x00" + zlib.compress(ICC)
    p.write_bytes(_png_with_chunks(p.read_bytes(), (b"iCCP", iccp), (b"eXIf", exif[6:])))


def _tif16_with_metadata(p, raw, exif):
    # tifffile writes no Exif IFD: the camera tags of IFD0 and the orientation only
    ifd0 = [(c, "s", 0, v, False) for c, v in CAMERA.items()]
    extratags = [(34675, 7, None, ICC, True), (274, "H", 1, 6, False), *ifd0]
    tifffile.imwrite(p, raw, photometric="rgb", extratags=extratags)


def _pillow_with_metadata(**kw):
    return lambda p, raw, exif: Image.fromarray(raw).save(p, exif=exif, icc_profile=ICC, **kw)


# name -> (writer(path, raw, exif) of an input with ICC and EXIF (orientation 6), bit depth)
METADATA_CASES = {
    "photo.jpg": (_pillow_with_metadata(quality=100, subsampling=0), 8),
    "photo.png": (_pillow_with_metadata(), 8),
    "photo16.png": (_png16_with_metadata, 16),
    "photo.tif": (_pillow_with_metadata(), 8),
    "photo16.tif": (_tif16_with_metadata, 16),
    "photo.webp": (_pillow_with_metadata(lossless=True), 8),
    # JPEG under its other names, and AVIF: the metadata travel as with .jpg
    "photo.jfif": (_pillow_with_metadata(quality=100, subsampling=0), 8),
    "photo.jpe": (_pillow_with_metadata(quality=100, subsampling=0), 8),
    "photo.avif": (_pillow_with_metadata(quality=100, subsampling="4:4:4"), 8),
}


@pytest.mark.parametrize("name", METADATA_CASES)
def test_cli_restore_keeps_icc_and_exif_with_orientation_reset(tmp_path, identity_ckpt, name):
    writer, bits = METADATA_CASES[name]
    raw = _u16(H, W, 3) if bits == 16 else _u8(H, W, 3)
    src = tmp_path / "in" / name
    src.parent.mkdir()
    writer(src, raw, _exif(6, camera=True))
    icc, ifd0, _ = _file_metadata(src)
    assert icc == ICC and ifd0[0x0112] == 6  # the input is what the test means it to be
    assert _cli([src], tmp_path / "out", identity_ckpt) == 0
    out = tmp_path / "out" / name

    icc, ifd0, sub = _file_metadata(out)
    assert icc == ICC
    assert {t: ifd0.get(t) for t in CAMERA} == CAMERA
    assert ifd0.get(0x0112, 1) == 1  # the pixels are upright: nothing left to rotate
    if name != "photo16.tif":  # the input has an Exif IFD: it is kept too
        assert {t: sub.get(t) for t in SHOT} == SHOT

    img = read_image(out)
    assert img.rgb.shape == (W, H, 3) and img.bit_depth == bits  # rotated once, not twice
    upright = np.rot90(raw, -1)  # orientation 6: 90 degrees clockwise
    if name.endswith((".jpg", ".jfif", ".jpe", ".avif")):
        assert np.abs(img.rgb - upright / 255.0).mean() < 0.02  # a lossy re-encode
    else:
        np.testing.assert_array_equal(np.round(img.rgb * (2**bits - 1)), upright)


# (suffix, bit depth, grayscale, alpha)
ROUND_TRIPS = [
    (".jpg", 8, False, False),
    (".jpg", 8, True, False),
    (".png", 8, False, True),
    (".png", 8, True, True),
    (".png", 16, False, False),
    (".png", 16, True, False),
    (".tif", 8, False, False),
    (".tif", 16, False, True),
    (".tif", 16, True, False),
    (".webp", 8, False, True),
]


@pytest.mark.parametrize(("suffix", "bits", "gray", "alpha"), ROUND_TRIPS)
def test_write_then_read_keeps_metadata(tmp_path, suffix, bits, gray, alpha):
    rgb = _u8(H, W, 3) / 255.0
    a = _u8(H, W) / 255.0 if alpha else None
    icc = _icc_as(b"GRAY") if gray else ICC
    path = tmp_path / f"a{suffix}"
    write_image(
        path, rgb, alpha=a, bit_depth=bits, grayscale=gray, icc=icc, exif=_exif(1, camera=True)
    )
    img = read_image(path)
    assert (img.bit_depth, img.grayscale, img.alpha is not None) == (bits, gray, alpha)
    assert img.icc == icc and img.exif.startswith(b"Exif\x00\x00")
    exif = Image.Exif()
    exif.load(img.exif)
    assert {t: exif.get(t) for t in CAMERA} == CAMERA and exif.get(0x0112, 1) == 1
    assert exif.get_ifd(0x8769) == SHOT
    assert _file_metadata(path)[0] == icc

    again = tmp_path / f"again{suffix}"  # what was read writes back alike
    write_image(
        again, img.rgb, alpha=img.alpha, bit_depth=bits, grayscale=gray, icc=img.icc, exif=img.exif
    )
    back = read_image(again)
    assert (back.icc, back.exif) == (img.icc, img.exif)
    if suffix != ".jpg":  # lossy
        np.testing.assert_array_equal(back.rgb, img.rgb)


@pytest.mark.parametrize(
    ("suffix", "bits"),
    [(".jpg", 8), (".png", 8), (".png", 16), (".tif", 8), (".tif", 16), (".webp", 8)],
)
def test_images_without_metadata_get_none(tmp_path, identity_ckpt, suffix, bits):
    src = tmp_path / f"plain{suffix}"
    write_image(src, _u8(H, W, 3) / 255.0, bit_depth=bits)
    img = read_image(src)
    assert img.icc is None
    if suffix != ".tif":  # tifffile always writes a resolution, which a TIFF's EXIF holds
        assert img.exif is None
    assert _cli([src], tmp_path / "out", identity_ckpt) == 0
    icc, ifd0, sub = _file_metadata(tmp_path / "out" / src.name)
    assert icc is None and sub == {}
    assert not set(ifd0) & {*CAMERA, 0x0112}
    if suffix == ".png":
        assert b"iCCP" not in (tmp_path / "out" / src.name).read_bytes()
        assert b"eXIf" not in (tmp_path / "out" / src.name).read_bytes()


def test_profiles_of_another_colour_space_are_dropped_exif_kept(tmp_path):
    cmyk = _u8(H, W, 4)
    Image.fromarray(cmyk, "CMYK").save(
        tmp_path / "cmyk.jpg", icc_profile=_icc_as(b"CMYK"), exif=_exif(1, camera=True)
    )
    img = read_image(tmp_path / "cmyk.jpg")  # converted naively to RGB: the profile would lie
    assert img.icc is None and img.exif is not None
    Image.fromarray(_u8(H, W)).save(tmp_path / "gray.png", icc_profile=ICC)  # RGB on gray
    assert read_image(tmp_path / "gray.png").icc is None
    # 16-bit gray with alpha is written as RGBA (as before), where no gray profile may go
    gray = np.repeat(_u8(H, W, 1) / 255.0, 3, axis=2)
    write_image(
        tmp_path / "ga16.png",
        gray,
        alpha=_u8(H, W) / 255.0,
        bit_depth=16,
        grayscale=True,
        icc=_icc_as(b"GRAY"),
    )
    assert b"iCCP" not in (tmp_path / "ga16.png").read_bytes()


def test_exif_never_overrides_the_tiff_layout(tmp_path):
    exif = Image.Exif()
    exif.update({256: 5, 257: 7, 259: 5, 262: 0, 0x010F: "GLSGN Optics"})  # width, height, ...
    rgb16 = _u16(H, W, 3)
    write_image(tmp_path / "a.tif", rgb16 / 65535.0, bit_depth=16, exif=exif.tobytes())
    with tifffile.TiffFile(tmp_path / "a.tif") as tf:
        page = tf.pages.first
        assert page.shape == (H, W, 3) and page.tags[271].value == "GLSGN Optics"
        np.testing.assert_array_equal(page.asarray(), rgb16)
    with Image.open(tmp_path / "a.tif") as im:  # a second reader of the rewritten IFD0
        assert im.size == (W, H) and im.getexif()[0x010F] == "GLSGN Optics"
