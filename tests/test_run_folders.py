"""Run folders never lose a run: ``--overwrite`` keeps the old run until the new one has
produced something (and puts it back when the new one fails first, even after kill -9),
and a second run into a busy folder is refused, naming the running process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from run_folder_helpers import (
    FAST,
    checkpoint_step,
    one_error,
    run,
    snapshot,
    start,
    wait_until,
)

from nodeprune.checkpoint import META_FILE
from nodeprune.cli import main
from nodeprune.errors import NodepruneError
from nodeprune.runlock import LOCK_FILE, FolderLock
from nodeprune.runs import ASIDE_DIR, CIRCUIT_FILE, MOVING_ASIDE_DIR, MOVING_BACK_DIR


@pytest.fixture(scope="session")
def model_dir(tiny_llama_dir):
    return tiny_llama_dir


@pytest.fixture
def finished(model_dir, tmp_path, capsys):
    """A finished run: its folder and the bytes of every file in it."""
    out = tmp_path / "run"
    assert run(model_dir, out, "--lam", "0") == 0
    capsys.readouterr()
    return out, snapshot(out)


def _garbage_gguf(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"this is no GGUF file")
    return path


def _task_file(tmp_path, lines):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


PAIR = json.dumps(
    {
        "clean": "When Mary and John went to the store, John gave a drink to",
        "corrupted": "When John and Mary went to the store, Mary gave a drink to",
        "answer": " Mary",
        "distractor": " John",
    }
)


def _keep_none(monkeypatch):
    import nodeprune.splits as task_data

    monkeypatch.setattr(
        task_data,
        "keep_correct",
        lambda gated, task, batch, size: (batch.select(torch.arange(0)), torch.zeros(0, 1)),
    )


def _interrupt_loading(monkeypatch):
    import nodeprune.large_models as large_models

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(large_models, "load_with_options", interrupted)


def _full_disk(monkeypatch):
    import nodeprune.fsutil as fsutil

    class Usage:
        free = 10_000

    monkeypatch.setattr(fsutil.shutil, "disk_usage", lambda path: Usage)


# A failing set-up: (flags, a patch of the environment, what the error says)
FAILED_SETUPS = {
    "model typo": (lambda t: ["--model", str(t / "no-such-model")], None, "no such model"),
    "garbage gguf": (lambda t: ["--model", str(_garbage_gguf(t))], None, "not a GGUF file"),
    "bad task-file line": (
        lambda t: ["--task-file", str(_task_file(t, [PAIR, PAIR, "{oops", PAIR]))],
        None,
        "pairs.jsonl:3: malformed JSON",
    ),
    "one repeated task-file line": (
        lambda t: ["--task-file", str(_task_file(t, [PAIR] * 12))],
        None,
        "also training prompts",
    ),
    "filter keeps no example": (lambda t: ["--filter"], _keep_none, "answers none of the"),
    "cuda without cuda": (lambda t: ["--device", "cuda"], None, "cannot move the model"),
    "disk too full for the run": (lambda t: [], _full_disk, "free, but this run writes about"),
    "ctrl-c while loading": (lambda t: [], _interrupt_loading, None),
}


@pytest.mark.parametrize("case", list(FAILED_SETUPS))
def test_an_overwrite_that_fails_to_set_up_keeps_the_old_run(
    model_dir, finished, tmp_path, capsys, monkeypatch, case
):
    if case == "cuda without cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out, before = finished
    flags, patch, message = FAILED_SETUPS[case]
    if patch is not None:
        patch(monkeypatch)
    rc = run(model_dir, out, "--lam", "0", "--overwrite", *flags(tmp_path))
    if message is None:
        assert rc == 130
        assert "interrupted" in capsys.readouterr().err
    else:
        assert rc == 2
        assert message in one_error(capsys)
    assert snapshot(out) == before  # every file, byte for byte; no lock, nothing aside


def test_an_overwrite_replaces_the_old_run_once_the_new_one_has_a_checkpoint(
    model_dir, finished, capsys
):
    out, before = finished
    assert run(model_dir, out, "--lam", "0", "--overwrite", "--steps", "2") == 0
    assert checkpoint_step(out) == 2
    assert not (out / ASIDE_DIR).exists() and not (out / LOCK_FILE).exists()
    assert snapshot(out).keys() == before.keys()


def _overwrite_argv(model_dir, out, steps: int, every: int) -> list[str]:
    flags = [a for a in FAST if a not in ("--steps", "4")]
    return ["discover", "--model", str(model_dir), "--out", str(out), *flags, "--lam", "0",
            "--steps", str(steps), "--checkpoint-every", str(every), "--overwrite"]  # fmt: skip


@pytest.mark.parametrize("delay", [0.0, 0.001, 0.3])
def test_kill_9_during_an_overwrite_set_up_loses_nothing(
    model_dir, finished, tmp_path, capsys, delay
):
    out, before = finished
    log = tmp_path / "killed.log"
    # No checkpoint before the last of 400 steps: killed, the new run has produced nothing.
    proc = start(_overwrite_argv(model_dir, out, 400, 0), log)
    moving = (out / ASIDE_DIR, out / MOVING_ASIDE_DIR)
    wait_until(proc, lambda: any(p.exists() for p in moving), log, "the old run moving aside")
    time.sleep(delay)  # killed while moving the old run aside, or while loading the model
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    # The next command in the folder puts the old run back, then refuses to clobber it.
    assert run(model_dir, out, "--lam", "0") == 2
    assert "already holds a run" in one_error(capsys)
    assert snapshot(out) == before


@pytest.mark.parametrize("delay", [0.0, 0.001, 0.3])
def test_ctrl_c_during_an_overwrite_set_up_keeps_the_old_run(model_dir, finished, tmp_path, delay):
    out, before = finished
    log = tmp_path / "interrupted.log"
    proc = start(_overwrite_argv(model_dir, out, 400, 0), log)
    moving = (out / ASIDE_DIR, out / MOVING_ASIDE_DIR)
    wait_until(proc, lambda: any(p.exists() for p in moving), log, "the old run moving aside")
    time.sleep(delay)  # while moving the old run aside, or while loading the model
    proc.send_signal(signal.SIGINT)
    rc = proc.wait()
    if rc == 0:
        # Python drops a KeyboardInterrupt raised inside a finalizer ("Exception ignored
        # in ... __del__"): that run went on to the end and replaced the old one.
        assert "Exception ignored" in log.read_text()
        assert checkpoint_step(out) == 400 and not (out / ASIDE_DIR).exists()
        return
    # 130, or (seen once in four runs of the 0.3 s case, cause not yet traced) death by the
    # SIGINT itself after nodeprune had printed its message and restored the old run; a
    # shell reports both as 130. What matters is checked in full: the message and the run.
    assert rc in (130, -signal.SIGINT), log.read_text()
    assert "nodeprune: interrupted" in log.read_text(), log.read_text()
    assert snapshot(out) == before  # put back by the interrupted process itself


def test_kill_9_after_the_new_run_checkpointed_keeps_the_new_run(
    model_dir, finished, tmp_path, capsys
):
    out, before = finished
    log = tmp_path / "killed.log"
    proc = start(_overwrite_argv(model_dir, out, 400, 1), log)

    def new_run_checkpointed() -> bool:  # the old run's checkpoint is at step 4 of 4
        try:
            meta = json.loads((out / META_FILE).read_text())
        except (OSError, ValueError):
            return False
        return meta["config"]["steps"] == 400 and meta["step"] >= 2

    wait_until(proc, new_run_checkpointed, log, "a checkpoint of the new run")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = checkpoint_step(out)
    assert 2 <= step < 400
    assert main(["discover", "--out", str(out), "--resume", "--quiet"]) == 0
    err = capsys.readouterr().err
    # The resume continued the new run (its settings, its step), not the old one.
    assert f"resuming {out} at step {step} of 400" in err
    assert not (out / ASIDE_DIR).exists()
    assert json.loads((out / CIRCUIT_FILE).read_text())["config"]["steps"] == 400


def test_a_second_run_into_a_busy_folder_is_refused_naming_the_first(model_dir, tmp_path, capsys):
    out, log = tmp_path / "run", tmp_path / "first.log"
    proc = start(_overwrite_argv(model_dir, out, 4000, 1)[:-1], log)
    try:
        wait_until(proc, lambda: checkpoint_step(out) >= 1, log, "the first checkpoint")
        for extra in ([], ["--overwrite"], ["--resume"]):
            assert run(model_dir, out, "--lam", "0", *extra) == 2
            error = one_error(capsys)
            assert "is in use by another nodeprune run" in error
            assert f"pid {proc.pid} on host {socket.gethostname()}" in error
            assert proc.poll() is None  # the first run goes on
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The dead process's lock is taken over at once.
    assert run(model_dir, out, "--lam", "0", "--overwrite") == 0
    assert not (out / LOCK_FILE).exists()


def test_a_lock_file_left_by_a_dead_process_is_taken_over(model_dir, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    out.mkdir()
    info = {"pid": dead.pid, "host": socket.gethostname(), "started": "yesterday"}
    (out / LOCK_FILE).write_text(json.dumps(info))
    assert run(model_dir, out, "--lam", "0") == 0
    assert not (out / LOCK_FILE).exists()


def test_without_flock_the_pid_in_the_lock_file_decides(tmp_path, monkeypatch):
    import errno

    import nodeprune.runlock as runlock

    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(runlock.fcntl, "flock", no_flock)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        info = {"pid": alive.pid, "host": socket.gethostname(), "started": "now"}
        (tmp_path / LOCK_FILE).write_text(json.dumps(info))
        with pytest.raises(NodepruneError, match=f"in use .*pid {alive.pid}"):
            FolderLock(tmp_path).acquire()
    finally:
        alive.kill()
        alive.wait()
    with FolderLock(tmp_path):  # its process is gone now: taken over
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()


def test_two_locks_in_one_process_exclude_each_other(tmp_path):
    with FolderLock(tmp_path):
        with pytest.raises(NodepruneError, match=f"pid {os.getpid()}"):
            FolderLock(tmp_path).acquire()
    FolderLock(tmp_path).acquire().release()


def test_a_planted_lock_link_or_aside_link_is_refused(model_dir, tmp_path, capsys):
    target = tmp_path / "outside"
    target.write_text("precious")
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).symlink_to(target)
    assert run(model_dir, out, "--lam", "0") == 2
    assert "symbolic link" in one_error(capsys)
    (out / LOCK_FILE).unlink()
    (out / ASIDE_DIR).symlink_to(tmp_path, target_is_directory=True)
    assert run(model_dir, out, "--lam", "0") == 2
    assert "not a folder that nodeprune made" in one_error(capsys)
    assert target.read_text() == "precious"


@pytest.mark.parametrize("half_done", [MOVING_ASIDE_DIR, MOVING_BACK_DIR])
def test_a_move_killed_half_way_is_undone(model_dir, finished, capsys, half_done):
    out, before = finished
    (out / half_done).mkdir()
    os.replace(out / CIRCUIT_FILE, out / half_done / CIRCUIT_FILE)  # the kill came here
    assert run(model_dir, out, "--lam", "0") == 2
    assert "already holds a run" in one_error(capsys)
    assert snapshot(out) == before
