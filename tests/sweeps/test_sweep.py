"""A 4-trial sweep on a tiny saved model, through the CLI, on both backends: one
trial fails on purpose; the table records it; a re-run skips the finished trials and
reruns only the failed one."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from nodeprune.cli import main
from nodeprune.sweeps.results import CURVE_PNG, RESULTS_CSV, RESULTS_JSON
from nodeprune.sweeps.trial import FAIL_ENV, KILL_ENV

GRID = ["--lam", "0.5", "0.9", "--seed", "0", "1"]
TINY_RUN = [
    "--task", "ioi", "--steps", "3", "--n-train", "8", "--n-val", "0", "--n-test", "8",
    "--no-filter", "--batch-size", "4", "--eval-batch-size", "8", "--quiet",
]  # fmt: skip
#: The trial made to fail (or to kill its worker) on the first run.
VICTIM = "seed=1,lam=0.9"


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_llama_dir) -> Path:
    return tiny_llama_dir


def _table(out):
    data = json.loads((out / RESULTS_JSON).read_text())
    with open(out / RESULTS_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["hash"]: r for r in data["trials"]}, rows


def _check_sweep(tiny_model_dir, out, backend_args, env_var, monkeypatch, expected_error):
    argv = ["sweep", "--model", str(tiny_model_dir), *GRID, *TINY_RUN, "--out", str(out)]
    argv += backend_args
    monkeypatch.setenv(env_var, VICTIM)
    assert main(argv) == 1  # a failed trial makes the exit status non-zero

    rows, csv_rows = _table(out)
    assert len(rows) == len(csv_rows) == 4
    failed = [r for r in rows.values() if r["status"] == "failed"]
    finished = [r for r in rows.values() if r["status"] == "finished"]
    assert len(failed) == 1 and len(finished) == 3
    assert (failed[0]["axes"]["lam"], failed[0]["axes"]["seed"]) == (0.9, 1)
    assert expected_error in failed[0]["error"]
    assert not (out / "trials" / failed[0]["hash"]).exists()
    for r in finished:
        assert (out / r["circuit"]).is_file()
        assert 0.0 <= r["mean_kept_fraction"] <= 1.0
        assert set(r["metrics"]) >= {"kl", "normalized_faithfulness", "accuracy"}
        assert r["wall_s"] >= r["train_s"] > 0 and r["error"] == ""
        assert r["model_loads"] == 1  # each worker loaded the model once for all its trials
    by_hash = {r["hash"]: r for r in csv_rows}
    assert by_hash[failed[0]["hash"]]["status"] == "failed"
    assert {r["lam"] for r in csv_rows} == {"0.5", "0.9"}
    assert (out / CURVE_PNG).stat().st_size > 0

    # Resume: the finished trials are skipped (their rows untouched), the failed reruns.
    monkeypatch.delenv(env_var)
    assert main(argv) == 0
    rows_again, csv_again = _table(out)
    assert len(rows_again) == len(csv_again) == 4
    for r in finished:
        assert rows_again[r["hash"]] == r
    assert rows_again[failed[0]["hash"]]["status"] == "finished"
    assert (out / "trials" / failed[0]["hash"] / "circuit.json").is_file()
    return rows_again


def test_local_sweep_records_failure_and_resumes(tiny_model_dir, tmp_path, monkeypatch):
    _check_sweep(
        tiny_model_dir, tmp_path / "sweep", ["--backend", "local"], FAIL_ENV, monkeypatch,
        "InjectedFailure",
    )  # fmt: skip


def test_ray_sweep_survives_a_killed_worker_and_resumes(tiny_model_dir, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    # The victim's worker process exits mid-trial; Ray reports the dead actor, the sweep
    # records the trial as failed and replaces the worker.
    rows = _check_sweep(
        tiny_model_dir, tmp_path / "sweep", ["--backend", "ray", "--ray-num-cpus", "2"],
        KILL_ENV, monkeypatch, "worker died",
    )  # fmt: skip
    assert all(r["worker"] != "ray actor" for r in rows.values())


def test_ray_backend_without_ray_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    argv = ["sweep", "--lam", "0.5", "--out", str(tmp_path), "--backend", "ray"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "pip install" in err and "ray==" in err and "--backend local" in err


def test_sweep_file_and_flags(tiny_model_dir, tmp_path):
    """Axes from [sweep], settings from [run], a flag overriding one axis."""
    config = tmp_path / "sweep.toml"
    config.write_text(
        f'model = "{tiny_model_dir}"\nsteps = 2\nn_train = 8\nn_val = 0\nn_test = 8\n'
        "filter = false\nbatch_size = 4\n[sweep]\nlam = [0.5, 0.9]\nseed = [0, 1]\n"
        f'[run]\nbackend = "local"\nout = "{tmp_path / "from-file"}"\n',
        encoding="utf-8",
    )
    assert main(["sweep", "--config", str(config), "--seed", "3", "--quiet"]) == 0
    rows, _ = _table(tmp_path / "from-file")
    assert sorted((r["axes"]["lam"], r["axes"]["seed"]) for r in rows.values()) == [
        (0.5, 3),
        (0.9, 3),
    ]
    assert all(r["config"]["steps"] == 2 for r in rows.values())
