"""Unwritable, full or wrong output paths: refused in one line before the work starts;
when a write fails after training, the trained result is kept (fallback file, final
checkpoint); never a ``.tmp`` file or a 0-byte export left behind. Read-only and full
file systems are real tmpfs mounts where the tests may mount (root), else skipped; the
failures that must land at one exact write are injected into that write."""

from __future__ import annotations

import errno
import json
import os
import signal

import pytest
from run_folder_helpers import (
    FAST,
    checkpoint_step,
    fill,
    one_error,
    read_only_folder,
    run,
    snapshot,
    start,
    tmpfs,
    wait_until,
)

import nodeprune.checkpoint as checkpoint
import nodeprune.checkpoint_io as checkpoint_io
import nodeprune.fsutil as fsutil
import nodeprune.runs as runs
from nodeprune.checkpoint import META_FILE, TENSORS_FILE
from nodeprune.circuit import Circuit
from nodeprune.cli import main
from nodeprune.runs import CIRCUIT_FILE


@pytest.fixture(scope="session")
def model_dir(tiny_llama_dir):
    return tiny_llama_dir


def _no_tmp_files(folder) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_an_out_that_is_a_file_is_refused_before_loading(model_dir, tmp_path, capsys):
    out = tmp_path / "out.json"
    out.write_text("mine")
    assert run(model_dir, out) == 2
    err = capsys.readouterr().err
    assert "out.json is a file, not a folder" in err and "loading" not in err
    assert out.read_text() == "mine"


def test_a_read_only_out_is_refused_before_loading(model_dir, tmp_path, capsys):
    with read_only_folder(tmp_path / "ro") as ro:
        assert run(model_dir, ro / "run") == 2
        err = capsys.readouterr().err
        assert "nodeprune: error: cannot" in err and "Traceback" not in err
        assert "read-only" in err or "permission denied" in err
        assert "loading" not in err


def test_a_full_disk_is_refused_before_loading(model_dir, tmp_path, capsys):
    with tmpfs(tmp_path / "disk", "size=256k") as disk:
        fill(disk)
        assert run(model_dir, disk / "run") == 2
        err = capsys.readouterr().err
        assert "disk is full" in one_error_of(err) and "loading" not in err
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def one_error_of(err: str) -> str:
    lines = [x for x in err.splitlines() if x.startswith("nodeprune: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_nearly_full_disk_is_refused_before_training_and_keeps_the_old_run(
    model_dir, tmp_path, capsys
):
    with tmpfs(tmp_path / "disk", "size=2m") as disk:
        out = disk / "run"
        assert run(model_dir, out, "--lam", "0") == 0
        before = snapshot(out)
        filler = fill(disk, leave=64 * 1024)
        capsys.readouterr()
        assert run(model_dir, out, "--lam", "0", "--overwrite") == 2
        assert "free, but this run writes about" in one_error(capsys)
        assert snapshot(out) == before
        filler.unlink()


def test_a_disk_that_fills_during_the_run_stops_it_at_the_last_good_checkpoint(
    model_dir, tmp_path, capsys
):
    with tmpfs(tmp_path / "disk", "size=8m") as disk:
        out, log = disk / "run", tmp_path / "run.log"
        flags = [a for a in FAST if a not in ("--steps", "4")]
        argv = ["discover", "--model", str(model_dir), "--out", str(out), *flags,
                "--steps", "400", "--checkpoint-every", "1"]  # fmt: skip
        proc = start(argv, log)
        wait_until(proc, lambda: checkpoint_step(out) >= 2, log, "a checkpoint")
        proc.send_signal(signal.SIGSTOP)
        filler = fill(disk)
        proc.send_signal(signal.SIGCONT)
        assert proc.wait(timeout=300) == 2
        err = log.read_text()
        assert "Traceback" not in err
        assert "disk is full" in err and "the last good checkpoint (after step" in err
        assert _no_tmp_files(out)
        good = checkpoint_step(out)
        filler.unlink()
        # The last good checkpoint is whole: it resumes (to a shorter end, via the API).
        tensors, meta = checkpoint.read_checkpoint(out)
        assert meta["step"] == good and "gates.log_alpha" in tensors


def _fail_writes_of(monkeypatch, module, name: str, after: int = 0):
    """Make the writes of files called ``name`` fail with a full disk, after ``after``
    successful ones."""
    real = module.write_temp
    calls = {"n": 0}

    def write_temp(path, data, root=None):
        if os.path.basename(path) == name:
            calls["n"] += 1
            if calls["n"] > after:
                raise fsutil.write_error(
                    fsutil.Path(path), OSError(errno.ENOSPC, "No space left on device")
                )
        return real(path, data, root)

    monkeypatch.setattr(module, "write_temp", write_temp)


def test_a_circuit_that_cannot_be_written_is_kept_in_a_fallback_file(
    model_dir, tmp_path, capsys, monkeypatch
):
    out, fallback = tmp_path / "run", tmp_path / "fallback"
    fallback.mkdir()
    monkeypatch.setattr(runs, "fallback_folders", lambda: [tmp_path / "nowhere.txt", fallback])
    (tmp_path / "nowhere.txt").write_text("a file, so no fallback folder")
    _fail_writes_of(monkeypatch, fsutil, CIRCUIT_FILE)
    assert run(model_dir, out, "--lam", "0") == 2
    error = one_error(capsys)
    assert "disk is full" in error and "was written to" in error and "--resume" in error
    (kept,) = fallback.iterdir()
    assert str(kept) in error
    assert not (out / CIRCUIT_FILE).exists() and _no_tmp_files(out)
    monkeypatch.undo()
    # The final checkpoint writes the same circuit again.
    assert main(["discover", "--out", str(out), "--resume", "--quiet"]) == 0
    again, saved = Circuit.load(out / CIRCUIT_FILE), Circuit.load(kept)
    assert again.comparable_json() == saved.comparable_json()


def test_a_final_checkpoint_that_cannot_be_written_still_gives_the_circuit(
    model_dir, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    _fail_writes_of(monkeypatch, checkpoint_io, TENSORS_FILE)
    assert run(model_dir, out, "--lam", "0", "--checkpoint-every", "0") == 0
    err = capsys.readouterr().err
    assert "disk is full" in err and "the circuit is written all the same" in err
    assert Circuit.load(out / CIRCUIT_FILE).config["steps"] == 4
    assert _no_tmp_files(out) and not (out / META_FILE).exists()


def test_a_checkpoint_that_cannot_be_written_mid_run_names_the_last_good_one(
    model_dir, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    _fail_writes_of(monkeypatch, checkpoint_io, META_FILE, after=2)
    assert run(model_dir, out, "--lam", "0", "--checkpoint-every", "1") == 2
    error = one_error(capsys)
    assert "checkpoint after step 3" in error
    assert "the last good checkpoint (after step 2) is kept" in error
    assert checkpoint_step(out) == 2 and _no_tmp_files(out)


def test_report_refuses_a_figures_file_before_drawing(model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(model_dir, out, "--lam", "0") == 0
    (out / "figures").write_text("not a folder")
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    assert "figures is a file, not a folder" in one_error(capsys)
    assert not (out / "report.html").exists() and _no_tmp_files(out)


def test_export_to_a_folder_or_a_failing_disk_leaves_no_file(
    model_dir, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    assert run(model_dir, out, "--lam", "0") == 0
    capsys.readouterr()
    export = ["export", str(out), "--format", "tl-hooks", "--out"]
    assert main([*export, str(tmp_path)]) == 2
    assert "is a folder; give the path of a file" in one_error(capsys)
    _fail_writes_of(monkeypatch, fsutil, "hooks.json")
    assert main([*export, str(tmp_path / "hooks.json")]) == 2
    assert "disk is full" in one_error(capsys)
    assert not (tmp_path / "hooks.json").exists() and _no_tmp_files(tmp_path)
    monkeypatch.undo()
    with read_only_folder(tmp_path / "ro") as ro:
        assert main([*export, str(ro / "hooks.json")]) == 2
        assert "cannot write" in one_error(capsys)
        assert list(ro.iterdir()) == []
    assert main([*export, str(tmp_path / "hooks.json")]) == 0
    assert json.loads((tmp_path / "hooks.json").read_text())["nodes"]
