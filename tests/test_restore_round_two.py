"""`glsgn restore`, round two: bad checkpoints, command lines and a foreign params.yaml. Each
is one `error:` line naming what is wrong (exit 2 before any image; exit 1 for one image while
the batch goes on), or the run does what was meant."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glsgn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from glsgn.model import build_model

from .conftest import TINY, build
from .test_hostile_inputs import _lines, _only_glsgn_lines, _u8
from .test_io_cli import _cli

RNG16 = np.random.default_rng(7)


@pytest.fixture
def image(tmp_path) -> Path:
    Image.fromarray(_u8(20, 30, 3)).save(tmp_path / "a.png")
    return tmp_path / "a.png"


def _one_error(capsys, *expected: str) -> str:
    err = capsys.readouterr().err
    _only_glsgn_lines(err)
    errors = [line for line in _lines(err) if "error:" in line]
    assert len(errors) == 1, errors
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def _resaved(tmp_path: Path, name: str, edit) -> Path:
    """A checkpoint whose stored state_dict was edited by `edit(state)` after saving."""
    path = tmp_path / f"{name}.pt"
    save_checkpoint(path, build(TINY))
    payload = torch.load(path, weights_only=True)
    edit(payload["state_dict"])
    torch.save(payload, path)
    return path


def _other_widths(state: dict) -> None:
    other = build_model(TINY.__class__(**{**TINY.__dict__, "widths": (8, 16, 32)}))
    state.clear()
    state.update(other.state_dict())


def _extra_block(state: dict) -> None:
    state["global_pathway.extra.weight"] = torch.zeros(4, 4, 3, 3)


def _nan(state: dict) -> None:
    key = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 4)
    state[key][0, 0, 0, 0] = float("nan")


@pytest.mark.parametrize(
    "edit, expected",
    [
        (_other_widths, ["weights do not fit", "of another shape (first: ", "in the file"]),
        (_extra_block, ["weights do not fit", "1 unexpected (first: global_pathway.extra"]),
        (lambda s: s.pop(next(iter(s))), ["weights do not fit", "1 missing (first: "]),
        (_nan, ["1 weight tensor(s) hold NaN or infinite values (first: "]),
    ],
    ids=["other-widths", "extra-block", "missing", "nan"],
)
def test_a_checkpoint_that_does_not_fit_is_one_line(tmp_path, image, capsys, edit, expected):
    ckpt = _resaved(tmp_path, "bad", edit)
    assert _cli([image], tmp_path / "out", ckpt) == 2
    _one_error(capsys, str(ckpt), *expected)
    assert not (tmp_path / "out" / "a.png").exists()
    with pytest.raises(CheckpointError, match="NaN|do not fit"):
        load_checkpoint(ckpt)


def test_non_finite_outputs_are_an_error_not_a_black_image(tmp_path, image, capsys):
    """Finite weights can still overflow (here: huge ones); the image fails by name."""
    model = build(TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e30)
    save_checkpoint(tmp_path / "huge.pt", model)
    assert _cli([image], tmp_path / "out", tmp_path / "huge.pt") == 1
    _one_error(capsys, str(image), "NaN or infinite")
    assert not (tmp_path / "out" / "a.png").exists()


def test_a_folder_as_checkpoint_says_so(tmp_path, image, capsys):
    assert _cli([image], tmp_path / "out", tmp_path) == 2
    _one_error(capsys, f"{tmp_path}: a folder, not a checkpoint file")


def test_an_empty_output_folder_name_is_refused(image, identity_ckpt, capsys, monkeypatch):
    monkeypatch.chdir(image.parent)
    with pytest.raises(SystemExit) as e:
        _cli([image], "", identity_ckpt)
    assert e.value.code == 2
    assert "an empty folder name" in capsys.readouterr().err
    assert sorted(p.name for p in image.parent.iterdir()) == ["a.png"]  # nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_index_is_named_as_given(tmp_path, image, identity_ckpt, capsys):
    assert _cli([image], tmp_path / "out", identity_ckpt, "--device", "cuda:7") == 2
    _one_error(capsys, "device 'cuda:7' was asked for")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_on_a_cpu_is_refused_once_up_front(tmp_path, identity_ckpt, capsys, precision):
    images = []
    for i in range(3):
        Image.fromarray(_u8(20, 30, 3)).save(tmp_path / f"{i}.png")
        images.append(tmp_path / f"{i}.png")
    flags = ("--device", "cpu", "--precision", precision)
    assert _cli(images, tmp_path / "out", identity_ckpt, *flags) == 2
    _one_error(capsys, f"--precision {precision}: autocast runs on cuda only")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_another_project_s_params_yaml_is_read_for_its_restore_section_only(
    tmp_path, image, identity_ckpt, capsys, monkeypatch
):
    """Run inside another DVC project: its own keys are none of restore's business; a bad
    `restore:` key is still refused, naming the file and the key."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("learning_rate: 3\nmodel: {layers: 50}\n")
    assert _cli([image], tmp_path / "out", identity_ckpt) == 0
    assert (tmp_path / "out" / "a.png").is_file()
    (tmp_path / "params.yaml").write_text("model: {layers: 50}\nrestore: {device: gpu}\n")
    assert _cli([image], tmp_path / "out2", identity_ckpt) == 2
    _one_error(capsys, "params.yaml: restore.device", "'gpu'")


def test_the_library_call_is_quiet_by_default(capsys):
    from glsgn.restore import restore

    restore(build(TINY), torch.rand(3, 16, 16))
    assert capsys.readouterr().err == ""


def test_restore_section_errors_do_not_touch_other_sections(tmp_path):
    from glsgn.config import ConfigError, load_restore

    (tmp_path / "p.yaml").write_text("train: {steps: -5}\nrestore: {patch_size: 512}\n")
    assert load_restore(tmp_path / "p.yaml").patch_size == 512
    (tmp_path / "p.yaml").write_text("restore: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"p.yaml: restore: expected a mapping"):
        load_restore(tmp_path / "p.yaml")


# --- names and a second run writing the same folder --------------------------------------


@pytest.mark.parametrize("length", [250, 255])
def test_names_up_to_the_file_system_limit_are_written(tmp_path, identity_ckpt, length):
    """The temporary beside the output is cut to fit, at a character's start (valid UTF-8,
    which APFS insists on): 'NAME.png' of 255 bytes is written."""
    from glsgn.atomic import temp_prefix

    name = "é" * ((length - 4) // 2) + "x" * ((length - 4) % 2) + ".png"
    assert len(os.fsencode(name)) == length
    prefix = temp_prefix(name)
    assert 255 - 14 - 3 <= len(prefix.encode("utf-8")) - 2 <= 255 - 14  # strict UTF-8
    (tmp_path / "in").mkdir()
    Image.fromarray(_u8(20, 30, 3)).save(tmp_path / "in" / name)
    assert _cli([tmp_path / "in" / name], tmp_path / "out", identity_ckpt) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == [name]


def test_a_killed_run_s_long_temporaries_are_found(tmp_path, identity_ckpt):
    from glsgn.atomic import temp_prefix

    name = "n" * 251 + ".png"
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    Image.fromarray(_u8(20, 30, 3)).save(tmp_path / "in" / name)
    left = tmp_path / "out" / f"{temp_prefix(name)}ab12cd34.tmp"
    other = tmp_path / "out" / f"{temp_prefix('other.png')}ab12cd34.tmp"
    left.write_bytes(b"half")
    other.write_bytes(b"not ours")
    assert _cli([tmp_path / "in" / name], tmp_path / "out", identity_ckpt) == 0
    assert not left.exists() and other.exists()


@pytest.mark.parametrize("links", [True, False], ids=["hard-links", "no-hard-links"])
def test_an_output_written_meanwhile_by_another_run_is_kept(
    tmp_path, identity_ckpt, capsys, monkeypatch, links
):
    """Without --overwrite, a file another run writes while this one restores is not
    replaced: this image fails by name (exit 1), the others are written."""
    import glsgn.cli

    for name in ("a.png", "b.png"):
        Image.fromarray(_u8(20, 30, 3)).save(tmp_path / name)
    out = tmp_path / "out"
    real = glsgn.cli.restore

    def other_run_writes_a(model, x, **kw):
        y = real(model, x, **kw)
        if not (out / "a.png").exists():
            (out / "a.png").write_bytes(b"the other run's")
        return y

    monkeypatch.setattr(glsgn.cli, "restore", other_run_writes_a)
    if not links:
        monkeypatch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(PermissionError(1, "x")))
    assert _cli([tmp_path / "a.png", tmp_path / "b.png"], out, identity_ckpt) == 1
    _one_error(capsys, str(tmp_path / "a.png"), "appeared while restoring", "kept, not replaced")
    assert (out / "a.png").read_bytes() == b"the other run's"
    assert (out / "b.png").is_file() and sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]


def test_a_batch_prints_one_line_per_image_and_one_bar(tmp_path, identity_ckpt):
    """Without --quiet, into a log file: the checkpoint line, one line per image, the summary;
    no image gets a bar of its own (the bar over the images is drawn on a terminal only)."""
    import subprocess
    import sys

    images = []
    for i in range(6):
        Image.fromarray(_u8(40, 50, 3)).save(tmp_path / f"{i}.png")
        images.append(str(tmp_path / f"{i}.png"))
    cmd = [sys.executable, "-m", "glsgn", "restore", *images, "-o", str(tmp_path / "out")]
    r = subprocess.run([*cmd, "--checkpoint", str(identity_ckpt)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = [ln.split("\r")[-1] for ln in r.stderr.splitlines()]
    lines = [ln for ln in lines if ln.strip()]
    per_image = [ln for ln in lines if " -> " in ln]
    assert len(per_image) == 6 and len(lines) == 6 + 2, lines
    assert "patch/s" not in r.stderr


# --- odd files ------------------------------------------------------------------------------


def test_an_mpo_is_written_as_a_full_quality_jpeg_with_its_metadata(
    tmp_path, identity_ckpt, capsys
):
    """A stereo JPEG's first image, at quality 95 and 4:4:4 like any JPEG output, ICC and EXIF
    kept (they were dropped, at Pillow's default quality 75 and 4:2:0, with a false warning)."""
    from .test_io_cli import CAMERA, ICC

    exif = Image.Exif()
    exif.update(CAMERA)
    frames = [Image.fromarray(_u8(32, 48, 3)) for _ in range(2)]
    frames[0].save(
        tmp_path / "s.mpo", save_all=True, append_images=frames[1:], icc_profile=ICC, exif=exif
    )
    assert Image.open(tmp_path / "s.mpo").format == "MPO"
    assert _cli([tmp_path / "s.mpo"], tmp_path / "out", identity_ckpt) == 0
    assert "cannot hold" not in capsys.readouterr().err
    with Image.open(tmp_path / "out" / "s.mpo") as out:
        assert out.format == "JPEG" and out.info.get("icc_profile") == ICC
        assert out.getexif()[0x010F] == CAMERA[0x010F]
        assert out.layer[0][1:3] == (1, 1)  # the luma's sampling equals the chroma's: 4:4:4
        assert out.quantization[0][0] <= 3  # quality 95's first coefficient (75 gives 8)


def test_a_bigtiff_without_exif_gets_no_exif_warning(tmp_path, identity_ckpt, capsys):
    import tifffile

    tifffile.imwrite(tmp_path / "b.tif", _u8(20, 30, 3), photometric="rgb", bigtiff=True)
    assert _cli([tmp_path / "b.tif"], tmp_path / "out", identity_ckpt) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, writer",
    [
        ("scan_0001", lambda p, a: Image.fromarray(a).save(p, format="PNG")),
        ("DSC00042", lambda p, a: Image.fromarray(a).save(p, format="JPEG", quality=95)),
        ("photo.jpg_large", lambda p, a: Image.fromarray(a).save(p, format="JPEG")),
        ("depth16", None),
    ],
)
def test_a_name_without_a_usable_suffix_is_written_in_its_own_format(
    tmp_path, identity_ckpt, name, writer
):
    """Written in the format it was decoded from, under its own name (16-bit included)."""
    import cv2

    from glsgn.data.io import read_image

    src = tmp_path / name
    if writer is None:
        a = RNG16.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
        src.write_bytes(cv2.imencode(".png", a)[1].tobytes())
    else:
        writer(src, _u8(20, 30, 3))
    assert _cli([src], tmp_path / "out", identity_ckpt) == 0
    before, after = read_image(src), read_image(tmp_path / "out" / name)
    assert after.format == before.format and after.bit_depth == before.bit_depth
    if before.format == "PNG":  # lossless: the identity model gives the pixels back
        np.testing.assert_array_equal(after.rgb, before.rgb)


def test_a_16_bit_gray_png_keeps_its_transparent_colour(tmp_path, identity_ckpt):
    """The tRNS key of a 16-bit gray PNG becomes the alpha it means (OpenCV ignores it)."""
    import struct
    import zlib

    import cv2

    from glsgn.data.io import read_image

    a = RNG16.integers(0, 65536, (6, 8), dtype=np.uint16)
    a[a == 1234] = 1235
    a[0, :4] = 1234
    png = cv2.imencode(".png", a)[1].tobytes()
    key = struct.pack(">H", 1234)
    chunk = struct.pack(">I", 2) + b"tRNS" + key + struct.pack(">I", zlib.crc32(b"tRNS" + key))
    (tmp_path / "k.png").write_bytes(png[:33] + chunk + png[33:])  # after IHDR
    img = read_image(tmp_path / "k.png")
    assert img.alpha is not None and img.grayscale
    np.testing.assert_array_equal(img.alpha == 0, a == 1234)
    assert _cli([tmp_path / "k.png"], tmp_path / "out", identity_ckpt) == 0
    out = read_image(tmp_path / "out" / "k.png")
    np.testing.assert_array_equal(out.alpha == 0, a == 1234)


def test_decoder_messages_are_captured_per_image_under_threads(tmp_path, capfd):
    """fd 2 is swapped by one decode at a time: every corrupt image's error carries libpng's
    own words, the good ones decode, and fd 2 is the terminal's again afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    from glsgn.data.io import ImageError, read_image

    from .test_hostile_inputs import _short_png16

    _short_png16(tmp_path / "short.png")
    Image.fromarray(_u8(1500, 1500, 3)).save(tmp_path / "fine.png")  # slow enough to overlap

    def decode(i: int) -> str:
        try:
            read_image(tmp_path / ("short.png" if i % 2 else "fine.png"))
            return "ok"
        except ImageError as e:
            return str(e)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(decode, range(64)))
    assert results[0::2] == ["ok"] * 32
    assert all("libpng error: Not enough image data" in r for r in results[1::2])
    os.write(2, b"fd 2 is back\n")
    assert capfd.readouterr().err == "fd 2 is back\n"
