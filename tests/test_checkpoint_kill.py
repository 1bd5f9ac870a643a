"""The real thing: ``nodeprune discover`` in a subprocess, killed with SIGKILL at a random
step (or stopped with SIGINT), then resumed with ``--resume``, ends with exactly the
circuit of an uninterrupted run: same JSON apart from timings, bitwise-equal gate logits.

``NODEPRUNE_KILL_ROUNDS=N`` runs N kill/resume rounds instead of one.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from run_folder_helpers import default_sigint
from safetensors.torch import load_file

from nodeprune.checkpoint import META_FILE, TENSORS_FILE
from nodeprune.cli import main

STEPS = 60
# Settings under which the tiny model's circuit is partial (some nodes kept, some pruned).
ARGS = [
    "--steps", str(STEPS), "--n-train", "24", "--n-val", "0", "--n-test", "12", "--no-filter",
    "--batch-size", "8", "--eval-batch-size", "16", "--lr", "0.04", "--lam", "0.5", "--seed", "2",
    "--init-spread", "2", "--checkpoint-every", "4", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="session")
def model_dir(tiny_llama_dir) -> Path:
    return tiny_llama_dir


def _argv(model_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["discover", "--model", str(model_dir), "--out", str(out), *ARGS, *extra]


@pytest.fixture(scope="module")
def reference(model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    assert main(_argv(model_dir, out)) == 0
    return out


def _start(model_dir: Path, out: Path, log: Path) -> subprocess.Popen:
    # Same intra-op thread count as this process, so float sums are ordered the same.
    threads = str(torch.get_num_threads())
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    with open(log, "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "nodeprune.cli", *_argv(model_dir, out)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            preexec_fn=default_sigint,  # Ctrl-C works even when pytest runs in the background
        )


def _checkpoint_step(out: Path) -> int:
    try:
        return int(json.loads((out / META_FILE).read_text())["step"])
    except (OSError, ValueError, KeyError):
        return -1


def _wait_for_step(proc: subprocess.Popen, out: Path, step: int, log: Path) -> None:
    deadline = time.monotonic() + 600
    while _checkpoint_step(out) < step:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) early: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the run made no progress in 10 minutes")
        time.sleep(0.005)


def _assert_same_result(out: Path, reference: Path) -> None:
    got = json.loads((out / "circuit.json").read_text())
    want = json.loads((reference / "circuit.json").read_text())
    got.pop("timings"), want.pop("timings")
    assert got == want
    got_alpha = load_file(out / TENSORS_FILE)["gates.log_alpha"]
    assert torch.equal(got_alpha, load_file(reference / TENSORS_FILE)["gates.log_alpha"])


def test_sigkill_at_a_random_step_then_resume_gives_the_same_circuit(
    model_dir, reference, tmp_path
):
    rounds = int(os.environ.get("NODEPRUNE_KILL_ROUNDS", "1"))
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    for i in range(rounds):
        out, log = tmp_path / f"run{i}", tmp_path / f"run{i}.log"
        target, delay = rng.randint(4, STEPS - 20), rng.uniform(0.0, 0.02)
        where = f"round {i}, kill after checkpoint {target} + {delay:.3f} s (seed {seed})"
        proc = _start(model_dir, out, log)
        _wait_for_step(proc, out, target, log)
        time.sleep(delay)  # so the kill lands anywhere: mid-step or mid-checkpoint-write
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, where
        assert not (out / "circuit.json").exists(), where
        assert main(_argv(model_dir, out, "--resume")) == 0, where
        _assert_same_result(out, reference)
        print(f"{where}: resumed from step {target}+, same circuit")


def test_sigint_leaves_a_usable_checkpoint(model_dir, reference, tmp_path, capsys):
    out, log = tmp_path / "run", tmp_path / "run.log"
    proc = _start(model_dir, out, log)
    _wait_for_step(proc, out, 8, log)
    proc.send_signal(signal.SIGINT)
    assert proc.wait() == 128 + signal.SIGINT
    message = log.read_text()
    assert "interrupted by SIGINT after step" in message and "--resume" in message
    stopped = int(message.split("interrupted by SIGINT after step ")[1].split()[0])
    assert _checkpoint_step(out) == stopped
    assert main(_argv(model_dir, out, "--resume")) == 0
    assert f"resuming {out} at step {stopped} of {STEPS}" in capsys.readouterr().err
    _assert_same_result(out, reference)
