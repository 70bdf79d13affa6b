"""The photo source (glsgn/data/photos.py): tiny .deb and .edj files built here, no network.

A .deb is built by hand (an ar archive of debian-binary, control.tar.xz and data.tar.xz), and
checked against dpkg-deb and ar where they exist, so the tests that use it test the real format.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glsgn.data.photos import (
    PhotoSourceError,
    fetch_photos,
    find_jpegs,
    iter_ar,
    largest_jpeg,
    read_control,
    read_listing,
    read_packages,
)

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# Builders: images, .edj blobs, .deb files, listings


def jpeg(width: int, height: int, seed: int = 0, **save) -> bytes:
    """A noise JPEG: its entropy-coded data holds stuffed FF 00 bytes, as a photo's does."""
    a = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def png(width: int, height: int, seed: int = 0) -> bytes:
    a = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def with_exif_thumbnail(image: bytes, thumbnail: bytes) -> bytes:
    """`image` with an APP1 (EXIF) segment right after its SOI that embeds `thumbnail`, a JPEG
    with an FF D9 of its own, as cameras write them."""
    payload = b"Exif\x00\x00" + thumbnail
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return image[:2] + app1 + image[2:]


def filler(n: int, seed: int) -> bytes:
    """Arbitrary bytes with no FF in them, so no JPEG starts by chance."""
    return np.random.default_rng(seed).integers(0, 255, n, dtype=np.uint8).tobytes()


def edj(seed: int = 0) -> tuple[bytes, bytes]:
    """An .edj-like blob and the photo inside it: a small preview, a broken JPEG start, the
    photo (progressive, with restart markers and an EXIF thumbnail) and a medium image."""
    photo = with_exif_thumbnail(
        jpeg(40, 30, seed, progressive=True, restart_marker_blocks=1), jpeg(8, 8, seed + 1)
    )
    blob = b"".join(
        [
            b"\x1e\xe7\xff\x1e",  # EET's magic
            filler(100, seed),
            jpeg(12, 9, seed + 2),  # the preview
            filler(50, seed + 3),
            b"\xff\xd8\xff\xe0\x00\x10JFIF",  # a JPEG start that is no JPEG
            filler(50, seed + 4),
            photo,
            filler(70, seed + 5),
            jpeg(30, 20, seed + 6),
            filler(30, seed + 7),
        ]
    )
    return blob, photo


def ar(members: list[tuple[str, bytes]], gnu: bool = True) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members:
        name = name + "/" if gnu else name
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n"
        out += [header.encode(), data, b"\n" if len(data) % 2 else b""]
    return b"".join(out)


def tar(files: dict[str, bytes], links: dict[str, str] | None = None, comp: str = "xz") -> bytes:
    """A tar archive as dpkg-deb writes them: "./"-prefixed names, folders listed first."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{comp}" if comp else "w") as t:
        folders = {str(Path(p).parent) for p in [*files, *(links or {})]}
        for folder in sorted({str(q) for f in folders for q in [Path(f), *Path(f).parents]}):
            if folder != ".":
                info = tarfile.TarInfo(f"./{folder}/")
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
        for path, data in files.items():
            info = tarfile.TarInfo(f"./{path}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for path, target in (links or {}).items():
            info = tarfile.TarInfo(f"./{path}")
            info.type, info.linkname = tarfile.SYMTYPE, target
            t.addfile(info)
    return buf.getvalue()


def deb(
    folder: Path,
    package: str,
    version: str,
    files: dict[str, bytes],
    links: dict[str, str] | None = None,
    comp: str = "xz",
    name: str | None = None,
) -> Path:
    """A .deb of `files` (and symbolic `links`) with the package's copyright file."""
    files = {f"usr/share/doc/{package}/copyright": f"{package}: CC0\n".encode(), **files}
    control = f"Package: {package}\nVersion: {version}\nArchitecture: all\n".encode()
    ext = f".{comp}" if comp else ""
    data = ar(
        [
            ("debian-binary", b"2.0\n"),
            ("control.tar.xz", tar({"control": control})),
            (f"data.tar{ext}", tar(files, links, comp)),
        ]
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{package}_{version.replace(':', '%3a')}_all.deb")
    path.write_bytes(data)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def listing(folder: Path, rows: list[tuple[str, str, str, bytes, int, int]]) -> Path:
    """PHOTOS.tsv with rows (package, version, path as listed, photo bytes, width, height)."""
    lines = ["package\tversion\tpath_in_package\tsha256\twidth\theight\tlicense"]
    lines += [f"{p}\t{v}\t{path}\t{sha(b)}\t{w}\t{h}\tCC0" for p, v, path, b, w, h in rows]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "PHOTOS.tsv").write_text("\n".join(lines) + "\n")
    return folder / "PHOTOS.tsv"


@pytest.fixture
def source(tmp_path):
    """Two packages in a folder of .debs, their listing, and the photos they hold.

    walls: a JPEG, a PNG, a link to the PNG elsewhere in the package (as lxqt-themes' beam.png)
    and two same-named links to one photo (as plasma's 1920x1080.jpg); its .deb is a later
    version than the listed one. enlightenment-data: a photo inside an .edj."""
    photo_jpg, photo_png = jpeg(32, 24, 1), png(24, 16, 2)
    blob, photo_edj = edj(3)
    files = {
        "usr/share/walls/sea.jpg": photo_jpg,
        "usr/share/walls/beam.png": photo_png,
        "usr/share/walls/Kite/images/2560x1600.jpg": photo_jpg,
    }
    links = {
        "usr/share/themes/silver/beam.png": "../../walls/beam.png",
        "usr/share/walls/Kite/images/1920x1080.jpg": "2560x1600.jpg",
        "usr/share/walls/Path/images/1920x1080.jpg": "/usr/share/walls/sea.jpg",
    }
    debs = tmp_path / "debs"
    deb(debs, "walls", "1:1.0-2", files, links)
    rebuild = {"files": files, "links": links}
    e = "usr/share/enlightenment/data/backgrounds"
    deb(debs, "enlightenment-data", "0.25-1", {f"{e}/Bamboo.edj": blob})
    rows = [
        ("walls", "1:1.0-1", "usr/share/walls/sea.jpg", photo_jpg, 32, 24),
        ("walls", "1:1.0-1", "usr/share/themes/silver/beam.png", photo_png, 24, 16),
        ("walls", "1:1.0-1", "usr/share/walls/Kite/images/1920x1080.jpg", photo_jpg, 32, 24),
        ("walls", "1:1.0-1", "usr/share/walls/Path/images/1920x1080.jpg", photo_jpg, 32, 24),
        (
            "enlightenment-data",
            "0.25-1",
            f"{e}/Bamboo.edj (largest embedded JPEG)",
            photo_edj,
            40,
            30,
        ),
    ]
    return {
        "debs": debs,
        "listing": read_listing(listing(tmp_path / "listing", rows)),
        "photos": {
            "walls/sea.jpg": photo_jpg,
            "walls/beam.png": photo_png,
            "walls/Kite-1920x1080.jpg": photo_jpg,
            "walls/Path-1920x1080.jpg": photo_jpg,
            "enlightenment-data/Bamboo.jpg": photo_edj,
        },
        "out": tmp_path / "photos",
        "walls": rebuild,  # what walls' .deb holds, to build others from
    }


# ---------------------------------------------------------------------------------------------
# The listing


def test_read_listing_and_packages(tmp_path):
    rows = [
        ("p", "1", "usr/a.jpg", b"a", 4, 3),
        ("e", "2", "x/B.edj (largest embedded JPEG)", b"b", 5, 6),
    ]
    photos = read_listing(listing(tmp_path, rows))
    assert [(p.package, p.path, p.embedded, p.width, p.height) for p in photos] == [
        ("p", "usr/a.jpg", False, 4, 3),
        ("e", "x/B.edj", True, 5, 6),
    ]
    assert photos[1].source == "x/B.edj (largest embedded JPEG)"
    assert photos[0].sha256 == sha(b"a")

    (tmp_path / "PACKAGES.tsv").write_text(
        "package\tversion\tdeb_bytes\tsha256\n" + f"p\t1:2.0-1\t1234\t{sha(b'p')}\n"
    )
    assert read_packages(tmp_path / "PACKAGES.tsv")["p"].deb_bytes == 1234

    bad = (tmp_path / "PHOTOS.tsv").read_text().replace(sha(b"b"), "nothex")
    (tmp_path / "PHOTOS.tsv").write_text(bad)
    with pytest.raises(PhotoSourceError, match=r"PHOTOS.tsv:3: sha256"):
        read_listing(tmp_path / "PHOTOS.tsv")
    with pytest.raises(PhotoSourceError, match="header"):
        read_listing(tmp_path / "PACKAGES.tsv")


def test_the_project_listing_reads_and_names_every_photo_apart():
    path = ROOT / "assets/photos/PHOTOS.tsv"
    if not path.exists():
        pytest.skip("assets/photos/PHOTOS.tsv is not in this checkout")
    from glsgn.data.photos import _file_names

    photos = read_listing(path)
    for package in {p.package for p in photos}:
        rows = [p for p in photos if p.package == package]
        assert len(set(_file_names(rows).values())) == len(rows), package
    assert set(read_packages(path.with_name("PACKAGES.tsv"))) == {p.package for p in photos}


# ---------------------------------------------------------------------------------------------
# JPEGs inside .edj files


def test_the_largest_embedded_jpeg_is_found_whole_where_a_naive_search_stops_short():
    blob, photo = edj()
    assert photo.count(b"\xff\xda") > 1  # progressive: several scans
    assert largest_jpeg(blob) == photo
    jpegs = find_jpegs(blob)
    assert [(j.width, j.height) for j in jpegs] == [(12, 9), (40, 30), (30, 20)]
    assert Image.open(io.BytesIO(largest_jpeg(blob))).size == (40, 30)

    start = blob.index(photo)
    naive = blob[start : blob.index(b"\xff\xd9", start) + 2]
    assert len(naive) < len(photo)  # it stopped at the end of the EXIF thumbnail
    # cut short, the photo is no JPEG; its thumbnail still is (and fails its sha256 check)
    cut = filler(100, 0) + photo[: len(photo) // 2]
    assert [(j.width, j.height) for j in find_jpegs(cut)] == [(8, 8)]
    with pytest.raises(ValueError, match="no complete JPEG"):
        largest_jpeg(filler(100, 0) + jpeg(16, 16)[:-1])


# ---------------------------------------------------------------------------------------------
# fetch_photos


def test_round_trip(source):
    m = fetch_photos(
        source["listing"], source["debs"], source["out"], include_enlightenment=True, progress=False
    )
    out = source["out"]
    for name, data in source["photos"].items():
        assert (out / name).read_bytes() == data, name
    assert (out / "walls/copyright").read_text() == "walls: CC0\n"
    assert (out / "enlightenment-data/copyright").exists()
    assert json.loads((out / "manifest.json").read_text()) == m
    assert [p["file"] for p in m["photos"]] == list(source["photos"])
    first = m["photos"][0]
    assert first == {
        "file": "walls/sea.jpg",
        "package": "walls",
        "version": "1:1.0-2",  # the .deb's version, not the listed 1:1.0-1
        "sha256": sha(source["photos"]["walls/sea.jpg"]),
        "width": 32,
        "height": 24,
        "license": "CC0",
        "source": "usr/share/walls/sea.jpg",
    }
    assert m["photos"][-1]["source"].endswith("Bamboo.edj (largest embedded JPEG)")
    walls = m["packages"]["walls"]
    assert walls["listed_version"] == "1:1.0-1"
    assert walls["deb"] == "walls_1%3a1.0-2_all.deb"
    assert walls["deb_sha256"] == sha((source["debs"] / walls["deb"]).read_bytes())
    assert sorted(p.name for p in out.parent.iterdir()) == ["debs", "listing", "photos"]


def test_enlightenment_is_left_out_unless_asked_for(source):
    (source["debs"] / "enlightenment-data_0.25-1_all.deb").unlink()  # not even needed
    m = fetch_photos(source["listing"], source["debs"], source["out"], progress=False)
    assert set(m["packages"]) == {"walls"}
    assert not (source["out"] / "enlightenment-data").exists()
    m = fetch_photos(source["listing"], source["debs"], source["out"], packages=[], progress=False)
    assert m == {"packages": {}, "photos": []}
    with pytest.raises(PhotoSourceError, match="no-such: not in the listing"):
        fetch_photos(source["listing"], source["debs"], source["out"], packages=["no-such"])


def test_a_checksum_mismatch_names_the_package_and_keeps_the_previous_output(source):
    fetch_photos(source["listing"], source["debs"], source["out"], progress=False)
    before = {p: p.read_bytes() for p in source["out"].rglob("*") if p.is_file()}
    files = {**source["walls"]["files"], "usr/share/walls/sea.jpg": jpeg(32, 24, 99)}
    deb(source["debs"], "walls", "1:1.0-2", files, source["walls"]["links"])
    with pytest.raises(PhotoSourceError) as e:
        fetch_photos(source["listing"], source["debs"], source["out"], progress=False)
    msg = str(e.value)
    assert msg.startswith("walls: usr/share/walls/sea.jpg in walls_1%3a1.0-2_all.deb")
    assert "get version 1:1.0-1 of walls" in msg
    assert {p: p.read_bytes() for p in source["out"].rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in source["out"].parent.iterdir()) == ["debs", "listing", "photos"]


def test_a_missing_package_says_what_to_do(source, tmp_path, monkeypatch):
    empty = tmp_path / "none"
    with pytest.raises(PhotoSourceError) as e:
        fetch_photos(source["listing"], empty, source["out"], progress=False)
    msg = str(e.value)
    assert msg.startswith("walls: no .deb in")
    assert f"put walls_*.deb in {empty}" in msg and "apt-get update" in msg

    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no apt-get
    with pytest.raises(PhotoSourceError, match="no apt-get here"):
        fetch_photos(source["listing"], empty, source["out"], download=True, progress=False)
    assert not source["out"].exists()


def test_download_runs_apt_get_download_in_the_debs_folder(source, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"  # a stand-in with apt-get download's behaviour, offline
    apt.write_text(
        "#!/bin/sh\n"
        f'cp "{source["debs"]}/$2"_*.deb . 2>/dev/null && exit 0\n'
        'echo "E: Unable to locate package $2" >&2; exit 100\n'
    )
    apt.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    fresh = tmp_path / "fresh"
    m = fetch_photos(source["listing"], fresh, source["out"], download=True, progress=False)
    assert m["packages"]["walls"]["deb"] == "walls_1%3a1.0-2_all.deb"
    assert (fresh / "walls_1%3a1.0-2_all.deb").exists()

    (source["debs"] / "walls_1%3a1.0-2_all.deb").unlink()
    with pytest.raises(PhotoSourceError, match="Unable to locate package walls.*apt-get update"):
        fetch_photos(source["listing"], tmp_path / "other", source["out"], download=True)


def test_debs_are_found_by_control_file_and_bad_ones_named(source, tmp_path):
    path = source["debs"] / "walls_1%3a1.0-2_all.deb"
    path.rename(source["debs"] / "renamed.deb")
    m = fetch_photos(source["listing"], source["debs"], source["out"], progress=False)
    assert m["packages"]["walls"]["deb"] == "renamed.deb"

    (source["debs"] / "walls_9_all.deb").write_bytes(b"<html>404</html>")
    with pytest.raises(PhotoSourceError, match=r"walls: walls_9_all.deb is not a Debian package"):
        fetch_photos(source["listing"], source["debs"], source["out"], progress=False)
    (source["debs"] / "walls_9_all.deb").unlink()

    files = dict(source["walls"]["files"])
    del files["usr/share/walls/beam.png"]  # the target of a listed link
    deb(source["debs"], "walls", "1:1.0-2", files, source["walls"]["links"])
    with pytest.raises(PhotoSourceError) as e:
        fetch_photos(source["listing"], source["debs"], source["out"], progress=False)
    assert str(e.value).startswith(
        "walls: walls_1%3a1.0-2_all.deb (version 1:1.0-2) has no usr/share/walls/beam.png "
        "(usr/share/themes/silver/beam.png is a link to usr/share/walls/beam.png); "
        "get version 1:1.0-1 of walls"
    )

    zst = ar([("debian-binary", b"2.0\n"), ("control.tar.zst", b"\x28\xb5\x2f\xfd")])
    (source["debs"] / "walls_1%3a1.0-2_all.deb").write_bytes(zst)
    try:
        import zstandard  # noqa: F401
    except ImportError:
        with pytest.raises(PhotoSourceError, match="zstd.*pip install zstandard"):
            fetch_photos(source["listing"], source["debs"], source["out"], progress=False)


# ---------------------------------------------------------------------------------------------
# The reader against dpkg-deb and ar


@pytest.mark.skipif(shutil.which("ar") is None, reason="binutils' ar is not installed")
def test_iter_ar_lists_what_ar_lists(tmp_path):
    for gnu in (True, False):
        members = [("debian-binary", b"2.0\n"), ("odd", b"abc"), ("control.tar.xz", b"x" * 7)]
        path = tmp_path / f"a{gnu}.deb"
        path.write_bytes(ar(members, gnu=gnu))
        listed = subprocess.run(["ar", "t", path], capture_output=True, text=True, check=True)
        with open(path, "rb") as f:
            ours = list(iter_ar(f))
            assert [m.name for m in ours] == listed.stdout.split() == [n for n, _ in members]
            for m, (_, data) in zip(ours, members, strict=True):
                f.seek(m.offset)
                assert f.read(m.size) == data


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")
def test_the_reader_agrees_with_dpkg_deb(source, tmp_path):
    """dpkg-deb reads the hand-built .debs as we do, and we read what dpkg-deb builds."""
    built = source["debs"] / "walls_1%3a1.0-2_all.deb"
    info = subprocess.run(["dpkg-deb", "-f", built, "Package", "Version"], capture_output=True)
    assert info.stdout.decode().split() == ["Package:", "walls", "Version:", "1:1.0-2"]
    assert read_control(built).version == "1:1.0-2"
    subprocess.run(["dpkg-deb", "-x", built, tmp_path / "x"], check=True)
    fetch_photos(source["listing"], source["debs"], source["out"], progress=False)
    for name, path in [
        ("sea.jpg", "usr/share/walls/sea.jpg"),
        ("beam.png", "usr/share/themes/silver/beam.png"),
    ]:
        assert (source["out"] / "walls" / name).read_bytes() == (tmp_path / "x" / path).read_bytes()

    tree = tmp_path / "tree"
    photo = source["photos"]["walls/sea.jpg"]
    for rel, data in {
        "DEBIAN/control": b"Package: walls\nVersion: 2.0\nArchitecture: all\nMaintainer: a <a@b>\n"
        b"Description: d\n",
        "usr/share/walls/sea.jpg": photo,
        "usr/share/doc/walls/copyright": b"c\n",
    }.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)
    rows = [("walls", "2.0", "usr/share/walls/sea.jpg", photo, 32, 24)]
    photos = read_listing(listing(tmp_path / "l2", rows))
    for comp in ("gzip", "xz"):
        debs = tmp_path / f"debs-{comp}"
        debs.mkdir()
        cmd = ["dpkg-deb", "--root-owner-group", f"-Z{comp}", "--build", tree, debs / "w.deb"]
        subprocess.run(cmd, check=True, capture_output=True)
        m = fetch_photos(photos, debs, tmp_path / f"out-{comp}", progress=False)
        assert m["packages"]["walls"]["version"] == "2.0"
        assert (tmp_path / f"out-{comp}/walls/sea.jpg").read_bytes() == photo
