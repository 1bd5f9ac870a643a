"""Shared by the run-folder tests: running ``discover`` in-process and as a real process,
snapshots of a folder, and file systems that are read-only or full (tmpfs mounts, where
the tests run as root and may mount; skipped elsewhere)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from nodeprune.checkpoint import META_FILE
from nodeprune.cli import main

FAST = ["--steps", "4", "--n-train", "16", "--n-val", "0", "--n-test", "8", "--no-filter",
        "--batch-size", "8", "--eval-batch-size", "16", "--quiet"]  # fmt: skip


def run(model_dir: Path, out: Path, *extra: str) -> int:
    return main(["discover", "--model", str(model_dir), "--out", str(out), *FAST, *extra])


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("nodeprune: error")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every entry of a folder (hidden ones too), with the bytes of the files."""
    return {
        p.name: (p.read_bytes() if p.is_file() and not p.is_symlink() else b"<not a file>")
        for p in sorted(folder.iterdir())
    }


def default_sigint() -> None:
    """For ``preexec_fn``: SIGINT at its default in the child (see start)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(argv: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(log, "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "nodeprune.cli", *argv],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            # A shell starts background jobs with SIGINT ignored, and a child inherits
            # that (Python then installs no KeyboardInterrupt): reset it, so the Ctrl-C
            # tests do not depend on how pytest itself was started.
            preexec_fn=default_sigint,
        )


def checkpoint_step(out: Path) -> int:
    try:
        return int(json.loads((out / META_FILE).read_text())["step"])
    except (OSError, ValueError, KeyError):
        return -1


def wait_until(proc: subprocess.Popen, ready, log: Path, what: str) -> None:
    deadline = time.monotonic() + 300
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before {what}: {log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} in 5 minutes")
        time.sleep(0.002)


@contextmanager
def tmpfs(path: Path, options: str):
    """A tmpfs mounted at ``path`` (skips the test where mounting is not allowed)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextmanager
def read_only_folder(path: Path):
    """A folder nodeprune may not write to: a read-only mount as root, else mode 0555."""
    if os.geteuid() == 0:
        with tmpfs(path, "ro,size=1m") as folder:
            yield folder
        return
    path.mkdir(parents=True)
    path.chmod(0o555)
    try:
        yield path
    finally:
        path.chmod(0o755)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of ``folder`` up to ``leave`` bytes free."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        chunk = b"\0" * 4096
        try:
            while True:
                free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
                if free <= leave:
                    break
                f.write(chunk[: max(1, min(4096, free - leave))])
                f.flush()
        except OSError:
            pass
    return filler
