"""The output folder of ``nodeprune discover``: no silent clobbering, --resume checks its
settings, and empty or full circuits are announced (an empty one is never circuit.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodeprune.checkpoint import META_FILE, TENSORS_FILE
from nodeprune.cli import main
from nodeprune.runs import CIRCUIT_FILE, EMPTY_CIRCUIT_FILE, EXIT_EMPTY

FAST = ["--steps", "4", "--n-train", "16", "--n-val", "0", "--n-test", "8", "--no-filter",
        "--batch-size", "8", "--eval-batch-size", "16", "--quiet"]  # fmt: skip


@pytest.fixture(scope="session")
def model_dir(tiny_llama_dir) -> Path:
    return tiny_llama_dir


def _run(model_dir: Path, out: Path, *extra: str) -> int:
    return main(["discover", "--model", str(model_dir), "--out", str(out), *FAST, *extra])


def _error(capsys) -> str:
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("nodeprune: error")]
    assert len(lines) == 1
    return lines[0]


def test_a_second_run_into_the_same_folder_is_refused(model_dir, tmp_path, capsys):
    assert _run(model_dir, tmp_path, "--lam", "0") == 0
    assert {p.name for p in tmp_path.iterdir()} == {CIRCUIT_FILE, META_FILE, TENSORS_FILE}
    capsys.readouterr()
    assert _run(model_dir, tmp_path, "--lam", "0") == 2
    assert "already holds a run" in _error(capsys)
    (tmp_path / CIRCUIT_FILE).unlink()  # a checkpoint alone is a run too
    assert _run(model_dir, tmp_path, "--lam", "0") == 2
    assert "--resume to continue it or --overwrite" in _error(capsys)


def test_overwrite_starts_over_and_resume_of_a_finished_run_repeats_it(model_dir, tmp_path):
    assert _run(model_dir, tmp_path, "--lam", "0", "--checkpoint-every", "1") == 0
    first = json.loads((tmp_path / CIRCUIT_FILE).read_text())
    assert _run(model_dir, tmp_path, "--lam", "0", "--overwrite", "--steps", "2") == 0
    assert json.loads((tmp_path / META_FILE).read_text())["step"] == 2
    assert _run(model_dir, tmp_path, "--lam", "0", "--overwrite") == 0
    assert _run(model_dir, tmp_path, "--resume") == 0  # settings come from the checkpoint
    again = json.loads((tmp_path / CIRCUIT_FILE).read_text())
    first.pop("timings"), again.pop("timings")
    assert again == first


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--resume", "--overwrite"], "pass only one of them"),
        (["--resume"], "there is no checkpoint"),
    ],
)
def test_resume_needs_a_checkpoint_and_excludes_overwrite(
    model_dir, tmp_path, capsys, flags, message
):
    assert _run(model_dir, tmp_path, *flags) == 2
    assert message in _error(capsys)


def test_resume_with_other_settings_is_refused(model_dir, tmp_path, capsys):
    assert _run(model_dir, tmp_path, "--lam", "0", "--steps", "2") == 0
    capsys.readouterr()
    assert _run(model_dir, tmp_path, "--lam", "0", "--steps", "2", "--resume", "--lr", "0.3") == 2
    error = _error(capsys)
    assert "lr 0.5 (checkpoint) vs 0.3 (now)" in error and "--overwrite" in error


def test_an_empty_circuit_is_not_written_as_the_result(model_dir, tmp_path, capsys):
    # Sparsity only (lam 1, no warm-up), fast: every gate closes.
    prune_all = ["--lam", "1", "--sparsity-warmup", "0", "--lr", "1", "--steps", "12"]
    assert _run(model_dir, tmp_path, *prune_all) == EXIT_EMPTY
    err = capsys.readouterr().err
    assert "EMPTY CIRCUIT" in err and "lower lam" in err and "--allow-empty" in err
    assert (tmp_path / EMPTY_CIRCUIT_FILE).exists() and not (tmp_path / CIRCUIT_FILE).exists()
    assert _run(model_dir, tmp_path, *prune_all, "--overwrite", "--allow-empty") == 0
    assert (tmp_path / CIRCUIT_FILE).exists() and not (tmp_path / EMPTY_CIRCUIT_FILE).exists()


def test_a_full_circuit_is_announced(model_dir, tmp_path, capsys):
    assert _run(model_dir, tmp_path, "--lam", "0", "--steps", "2") == 0
    assert "FULL CIRCUIT: nothing was pruned" in capsys.readouterr().err


def test_a_negative_checkpoint_interval_is_refused(model_dir, tmp_path, capsys):
    assert _run(model_dir, tmp_path, "--checkpoint-every", "-1") == 2
    assert "checkpoint_every must be >= 0" in _error(capsys)
