"""The one safe writer (nodeprune.fsutil): atomic, never through a symbolic link, no
``.tmp`` or 0-byte file left by a failed write, and one-line errors naming the fix."""

from __future__ import annotations

import errno
import os

import pytest

from nodeprune import fsutil
from nodeprune.fsutil import (
    WriteError,
    atomic_write,
    check_file_target,
    check_writable,
    ensure_folder,
)


def _outside(tmp_path):
    target = tmp_path / "outside.txt"
    target.write_text("precious")
    return target


def test_a_write_replaces_the_file_atomically_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "run" / "circuit.json"
    atomic_write(path, "one")
    atomic_write(path, b"two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["circuit.json"]


def test_a_link_at_the_file_is_replaced_not_written_through(tmp_path):
    target = _outside(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.html").symlink_to(target)
    atomic_write(run / "report.html", "<html>", root=run)
    assert target.read_text() == "precious"
    assert not (run / "report.html").is_symlink()
    assert (run / "report.html").read_text() == "<html>"


def test_a_link_planted_as_the_temporary_file_is_removed_not_written_through(tmp_path):
    target = _outside(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.json.tmp").symlink_to(target)
    atomic_write(run / "checkpoint.json", "{}", root=run)
    assert target.read_text() == "precious"
    assert (run / "checkpoint.json").read_text() == "{}"
    assert not os.path.lexists(run / "checkpoint.json.tmp")


def test_a_linked_folder_inside_the_run_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "figures").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(WriteError, match="figures is a symbolic link .*remove the link") as info:
        atomic_write(run / "figures" / "a.png", b"png", root=run)
    assert "\n" not in str(info.value)
    assert list(elsewhere.iterdir()) == []
    with pytest.raises(WriteError, match="symbolic link"):
        ensure_folder(run / "figures", root=run)


def test_a_file_where_a_folder_belongs_is_a_one_line_error(tmp_path):
    (tmp_path / "figures").write_text("not a folder")
    with pytest.raises(WriteError, match="figures is a file, not a folder"):
        ensure_folder(tmp_path / "figures", root=tmp_path)
    with pytest.raises(WriteError, match="figures is a file, not a folder"):
        atomic_write(tmp_path / "figures" / "x.png", b"", root=tmp_path)
    with pytest.raises(WriteError, match="is a folder; give the path of a file"):
        check_file_target(tmp_path, "export --out")
    with pytest.raises(WriteError, match="out.json is a file, not a folder"):
        check_writable(_write(tmp_path / "out.json"), "--out")


def _write(path):
    path.write_text("x")
    return path


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(
    tmp_path, monkeypatch, code
):
    path = tmp_path / "export.json"
    path.write_text("old")

    def fail(fd, data):
        os.write(fd, bytes(data[:3]))  # a part reaches the disk, then the error
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fsutil, "_write_all", fail)
    with pytest.raises(WriteError) as info:
        atomic_write(path, "new content")
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert {errno.ENOSPC: "disk is full", errno.EROFS: "read-only", errno.EACCES: "permission"}[
        code
    ] in message
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json"]


def test_a_failed_first_write_leaves_no_zero_byte_file(tmp_path, monkeypatch):
    def fail(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil, "_write_all", fail)
    with pytest.raises(WriteError, match="disk is full"):
        atomic_write(tmp_path / "export.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_check_writable_refuses_a_full_disk_before_the_work(tmp_path, monkeypatch):
    class Usage:
        free = 1000

    monkeypatch.setattr(fsutil.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(WriteError, match=r"has 1\.0 kB free, but this run writes about 2\.0 MB"):
        check_writable(tmp_path, "the output folder", need=2_000_000)
    check_writable(tmp_path, "the output folder", need=500)
    assert list(tmp_path.iterdir()) == []  # the probe file is gone again
