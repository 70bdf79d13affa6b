from __future__ import annotations

import os

import pytest

from glsgn.atomic import atomic_write


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write(b"half of the new")
            raise RuntimeError("killed")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    with atomic_write(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"


def test_permissions_are_those_of_a_normal_write_or_the_old_file(tmp_path):
    with atomic_write(tmp_path / "new.png") as f:
        f.write(b"x")
    (tmp_path / "plain.png").write_bytes(b"x")  # what open() makes under this umask
    mode = (tmp_path / "plain.png").stat().st_mode & 0o777
    assert (tmp_path / "new.png").stat().st_mode & 0o777 == mode
    os.chmod(tmp_path / "new.png", 0o640)
    with atomic_write(tmp_path / "new.png") as f:
        f.write(b"y")
    assert (tmp_path / "new.png").stat().st_mode & 0o777 == 0o640
