"""`glsgn restore` against hostile but ordinary inputs and file systems: each case is restored
right (pixels, size, bit depth, metadata), or refused with one `error:` line naming the file
while the batch goes on; nothing is left behind, and the decoders' own chatter never reaches
the user."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from glsgn.checkpoint import load_checkpoint
from glsgn.data.io import ImageError, read_image
from glsgn.restore import restore

from .test_io_cli import CAMERA, _cli
from .test_restore import _whole

RNG = np.random.default_rng(1)


def _u8(*shape):
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def _u16(*shape):
    return RNG.integers(0, 65536, size=shape, dtype=np.uint16)


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def _only_glsgn_lines(err: str) -> None:
    """Every line the user sees is glsgn's own (logging off: the tests run with --quiet and
    no handler, so only the error, warning and summary lines print)."""
    for line in _lines(err):
        assert line.startswith(("glsgn restore: ", "restored ")), line


# --- pages and frames ----------------------------------------------------------------------


def _multipage_tif8(p):
    pages = [_u8(24, 32, 3) for _ in range(3)]
    tifffile.imwrite(p, np.stack(pages), photometric="rgb")
    return pages[0], 8


def _multipage_tif16(p):
    pages = [_u16(24, 32, 3) for _ in range(2)]
    tifffile.imwrite(p, np.stack(pages), photometric="rgb")
    return pages[0], 16


def _animated(fmt):
    def write(p):
        frames = [_u8(24, 32, 3) for _ in range(3)]
        ims = [Image.fromarray(f) for f in frames]
        if fmt == "GIF":  # a GIF holds a palette: the first frame as its palette renders it
            ims = [im.convert("P", palette=Image.Palette.ADAPTIVE) for im in ims]
            frames[0] = np.asarray(ims[0].convert("RGB"))
        ims[0].save(p, format=fmt, save_all=True, append_images=ims[1:], duration=100, loop=0)
        return frames[0], 8

    return write


PAGED = {
    "pages8.tif": _multipage_tif8,
    "pages16.tif": _multipage_tif16,
    "animated.gif": _animated("GIF"),
    "animated.png": _animated("PNG"),
}


@pytest.mark.parametrize("name", PAGED)
def test_multipage_and_animated_restore_the_first_page_and_say_so(
    tmp_path, identity_ckpt, capsys, name
):
    src = tmp_path / name
    first, bits = PAGED[name](src)
    assert _cli([src], tmp_path / "out", identity_ckpt) == 0
    err = capsys.readouterr().err
    assert f"warning: {src}: " in err and "only the first is restored" in err
    _only_glsgn_lines(err)
    out = read_image(tmp_path / "out" / name)
    assert out.bit_depth == bits
    np.testing.assert_array_equal(np.round(out.rgb * (2**bits - 1)), first)


def test_a_one_page_file_gets_no_page_warning(tmp_path, identity_ckpt, capsys):
    tifffile.imwrite(tmp_path / "one.tif", _u8(24, 32, 3), photometric="rgb")
    assert _cli([tmp_path / "one.tif"], tmp_path / "out", identity_ckpt) == 0
    assert "warning" not in capsys.readouterr().err


# --- 1-bit, 16-bit PNM, extreme shapes -------------------------------------------------------


def test_a_one_bit_png_restores_as_its_8_bit_gray_twin(tmp_path, random_ckpt):
    bits = RNG.random((40, 56)) > 0.57
    Image.fromarray(bits).convert("1").save(tmp_path / "bw.png")
    Image.fromarray((bits * 255).astype(np.uint8)).save(tmp_path / "gray.png")
    assert Image.open(tmp_path / "bw.png").mode == "1"
    img = read_image(tmp_path / "bw.png")
    assert img.grayscale and img.bit_depth == 8 and abs(img.rgb.mean() - bits.mean()) < 1e-6
    assert _cli([tmp_path / "bw.png", tmp_path / "gray.png"], tmp_path / "out", random_ckpt) == 0
    a, b = (read_image(tmp_path / "out" / n).rgb for n in ("bw.png", "gray.png"))
    np.testing.assert_array_equal(a, b)
    assert 0.05 < a.mean() < 0.95  # not all white, not all black


def _pnm16(p: Path, a: np.ndarray, maxval: int = 65535) -> None:
    magic = b"P5" if a.ndim == 2 else b"P6"
    h, w = a.shape[:2]
    p.write_bytes(
        magic + f"\n# a comment\n{w} {h}\n{maxval}\n".encode() + a.astype(">u2").tobytes()
    )


@pytest.mark.parametrize("name, shape", [("deep.ppm", (20, 30, 3)), ("deep.pgm", (20, 30))])
def test_16_bit_ppm_and_pgm_are_read_and_written_at_16_bits(tmp_path, identity_ckpt, name, shape):
    raw = _u16(*shape)
    _pnm16(tmp_path / name, raw)
    img = read_image(tmp_path / name)
    assert img.bit_depth == 16 and img.grayscale == (len(shape) == 2)
    np.testing.assert_array_equal(
        np.round(img.rgb[..., 0] * 65535), raw if len(shape) == 2 else raw[..., 0]
    )
    assert _cli([tmp_path / name], tmp_path / "out", identity_ckpt) == 0
    out = read_image(tmp_path / "out" / name)
    assert out.bit_depth == 16
    np.testing.assert_array_equal(out.rgb, img.rgb)
    # an independent reader agrees: OpenCV reads the output as 16-bit
    cv = cv2.imread(str(tmp_path / "out" / name), cv2.IMREAD_UNCHANGED)
    assert cv.dtype == np.uint16 and cv.shape[:2] == shape[:2]


def test_a_12_bit_pgm_is_scaled_to_the_full_range_and_a_truncated_one_refused(tmp_path):
    raw = RNG.integers(0, 4096, (10, 12)).astype(np.uint16)
    _pnm16(tmp_path / "d12.pgm", raw, maxval=4095)
    np.testing.assert_allclose(read_image(tmp_path / "d12.pgm").rgb[..., 0], raw / 4095, atol=1e-5)
    data = (tmp_path / "d12.pgm").read_bytes()
    (tmp_path / "cut.pgm").write_bytes(data[:-7])
    with pytest.raises(ImageError, match=r"cut.pgm: truncated PNM data"):
        read_image(tmp_path / "cut.pgm")


@pytest.mark.parametrize(
    "hw",
    [pytest.param(hw, marks=pytest.mark.slow) for hw in [(3, 2000), (2000, 3)]]
    + [(2, 700), (5, 5)],
)
def test_extreme_shapes_equal_the_whole_image_forward(random_ckpt, hw):
    """A 3 x 2000 image restored patch by patch is what the network computes on the whole
    image, mirrored out to its least side as restore does: streaming did not make it."""
    model, _ = load_checkpoint(random_ckpt)
    x = torch.rand(3, *hw)
    y = restore(model, x, patch_size=16, progress=False)
    assert y.shape == x.shape and float((y - _whole(model, x)).abs().max()) <= 1e-5


def test_a_side_below_the_grid_is_restored_with_a_warning(tmp_path, random_ckpt, capsys):
    Image.fromarray(_u8(3, 400, 3)).save(tmp_path / "strip.jpg", quality=95)
    assert _cli([tmp_path / "strip.jpg"], tmp_path / "out", random_ckpt) == 0
    err = capsys.readouterr().err
    assert f"warning: {tmp_path / 'strip.jpg'}: 400x3 has a side below the model's" in err
    assert read_image(tmp_path / "out" / "strip.jpg").rgb.shape == (3, 400, 3)


# --- metadata that cannot travel -------------------------------------------------------------


def test_a_bigtiff_with_exif_is_restored_without_its_exif_and_says_so(
    tmp_path, identity_ckpt, capsys
):
    raw = _u16(20, 30, 3)
    tags = [(c, "s", 0, v, False) for c, v in CAMERA.items()]
    tifffile.imwrite(tmp_path / "big.tif", raw, photometric="rgb", bigtiff=True, extratags=tags)
    assert open(tmp_path / "big.tif", "rb").read(4) == b"II+\x00"
    assert _cli([tmp_path / "big.tif"], tmp_path / "out", identity_ckpt) == 0
    err = capsys.readouterr().err
    assert "BigTIFF: its EXIF is not carried" in err
    out = read_image(tmp_path / "out" / "big.tif")
    np.testing.assert_array_equal(np.round(out.rgb * 65535), raw)


# --- decoder chatter ------------------------------------------------------------------------


def _short_png16(p):
    """A 16-bit PNG whose chunks are whole but whose image data stop half way: libpng prints
    "Not enough image data" on stderr when OpenCV decodes it."""
    png = cv2.imencode(".png", _u16(20, 30, 3))[1].tobytes()
    i, chunks = 8, []
    while i < len(png):
        (n,) = struct.unpack(">I", png[i : i + 4])
        chunks.append((png[i + 4 : i + 8], png[i + 8 : i + 8 + n]))
        i += 12 + n
    raw = zlib.decompress(b"".join(d for k, d in chunks if k == b"IDAT"))
    body = [(b"IHDR", chunks[0][1]), (b"IDAT", zlib.compress(raw[: len(raw) // 2])), (b"IEND", b"")]
    p.write_bytes(
        png[:8]
        + b"".join(
            struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))
            for k, d in body
        )
    )


def test_decoder_chatter_is_kept_in_glsgn_s_error_line(tmp_path, random_ckpt, capfd):
    _short_png16(tmp_path / "short.png")
    Image.fromarray(_u8(20, 30, 3)).save(tmp_path / "fine.png")
    assert _cli([tmp_path / "short.png", tmp_path / "fine.png"], tmp_path / "out", random_ckpt) == 1
    err = capfd.readouterr().err  # at the file descriptor: what C libraries print too
    _only_glsgn_lines(err)
    errors = [line for line in _lines(err) if "error:" in line]
    assert len(errors) == 1 and str(tmp_path / "short.png") in errors[0]
    assert "libpng error: Not enough image data" in errors[0]
    assert (tmp_path / "out" / "fine.png").is_file()


# --- the output folder ----------------------------------------------------------------------


def test_bad_output_folders_are_one_error_line(tmp_path, identity_ckpt, capsys):
    Image.fromarray(_u8(20, 30, 3)).save(tmp_path / "a.png")
    (tmp_path / "file").write_text("not a folder")
    cases = {
        tmp_path / "file": "exists and is not a folder",
        tmp_path / "file" / "sub": "cannot create the folder",
    }
    if os.geteuid() == 0 and Path("/sys/kernel").is_dir():  # root writes anywhere but here
        cases[Path("/sys/glsgn-out")] = "cannot create the folder"
    for outdir, reason in cases.items():
        assert _cli([tmp_path / "a.png"], outdir, identity_ckpt) == 2
        err = capsys.readouterr().err
        lines = _lines(err)
        prefix = f"glsgn restore: error: -o {outdir}: {reason}"
        assert len(lines) == 1 and lines[0].startswith(prefix), lines
        assert "Traceback" not in err


def test_an_unwritable_output_folder_is_refused(tmp_path, identity_ckpt, capsys):
    Image.fromarray(_u8(20, 30, 3)).save(tmp_path / "a.png")
    if os.geteuid() == 0:
        if not Path("/sys/kernel").is_dir():
            pytest.skip("root writes in any folder, and there is no /sys/kernel here")
        outdir = Path("/sys/kernel")  # a folder even root cannot create files in
        assert _cli([tmp_path / "a.png"], outdir, identity_ckpt) in (1, 2)
    else:
        outdir = tmp_path / "ro"
        outdir.mkdir()
        outdir.chmod(0o500)
        assert _cli([tmp_path / "a.png"], outdir, identity_ckpt) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{outdir}" in err
    assert len([line for line in _lines(err) if "error:" in line]) == 1
    _only_glsgn_lines(err)


def test_special_files_are_refused_by_name_and_the_batch_goes_on(tmp_path, identity_ckpt):
    """A FIFO would block the open, /dev/zero never end: each is refused before it is opened.
    In a subprocess with a time limit, so a regression fails instead of hanging the tests."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    Image.fromarray(_u8(20, 30, 3)).save(tmp_path / "a.png")
    inputs = [fifo, Path("/dev/null"), Path("/dev/zero"), tmp_path / "a.png"]
    cmd = [sys.executable, "-m", "glsgn", "restore", *map(str, inputs), "-o", str(tmp_path / "out")]
    cmd += ["--checkpoint", str(identity_ckpt), "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert f"error: {fifo}: not a regular file (a FIFO)" in r.stderr
    assert "error: /dev/null: not a regular file (a character device)" in r.stderr
    assert "error: /dev/zero: not a regular file (a character device)" in r.stderr
    assert (tmp_path / "out" / "a.png").is_file() and "restored 1 of 4" in r.stderr


# --- signals and what a killed run leaves ----------------------------------------------------


@pytest.fixture
def default_signals():
    """Python's own dispositions: a test run started in the background of a script inherits
    SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.mark.parametrize(
    "signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)]
)
def test_a_signal_while_writing_cleans_up_and_exits_non_zero(
    tmp_path, identity_ckpt, monkeypatch, capsys, default_signals, signum, code
):
    for name in ("a.png", "b.png"):
        Image.fromarray(_u8(20, 30, 3)).save(tmp_path / name)
    fsync, seen = os.fsync, []

    def fsync_then_signal(fd):  # the signal arrives with the temporary file open
        seen.append(sorted(p.name for p in (tmp_path / "out").iterdir()))
        fsync(fd)
        os.kill(os.getpid(), signum)

    monkeypatch.setattr(os, "fsync", fsync_then_signal)
    rc = _cli([tmp_path / "a.png", tmp_path / "b.png"], tmp_path / "out", identity_ckpt)
    assert rc == code
    assert seen and seen[0][0].startswith(".a.png.") and seen[0][0].endswith(".tmp")
    assert list((tmp_path / "out").iterdir()) == []  # no temporary, no half output
    err = capsys.readouterr().err
    assert f"stopped by {signal.Signals(signum).name}: 0 of 2 image(s) restored" in err
    assert signal.getsignal(signal.SIGTERM) is not None  # the handler was put back


def test_a_signal_the_caller_ignores_stays_ignored(
    tmp_path, identity_ckpt, monkeypatch, default_signals
):
    """`nohup glsgn restore ...`: a hang-up neither stops the batch nor loses an output."""
    Image.fromarray(_u8(20, 30, 3)).save(tmp_path / "a.png")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    fsync = os.fsync

    def fsync_then_hangup(fd):
        fsync(fd)
        os.kill(os.getpid(), signal.SIGHUP)

    monkeypatch.setattr(os, "fsync", fsync_then_hangup)
    assert _cli([tmp_path / "a.png"], tmp_path / "out", identity_ckpt) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN


def test_the_next_run_removes_what_a_killed_run_left(tmp_path, identity_ckpt):
    Image.fromarray(_u8(20, 30, 3)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".a.png.k2j_9xq0.tmp"  # atomic_write's naming, as SIGKILL leaves it
    stale.write_bytes(b"half a png")
    other = out / ".notes.txt.abcdefgh.tmp"  # not one of this run's outputs: kept
    other.write_bytes(b"someone else's")
    assert _cli([tmp_path / "a.png"], out, identity_ckpt) == 0
    assert sorted(p.name for p in out.iterdir()) == [".notes.txt.abcdefgh.tmp", "a.png"]
