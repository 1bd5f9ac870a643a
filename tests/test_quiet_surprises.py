"""No quiet surprises: a test split that would be the training set is refused, evaluate's
--n is checked, and settings that make a run take hours (or more memory than there is)
are said before the work, not after."""

from __future__ import annotations

import json

import pytest
from run_folder_helpers import run

import nodeprune.runcost as runcost
from nodeprune.cli import main
from nodeprune.config import DiscoveryConfig
from nodeprune.errors import NodepruneError
from nodeprune.intervention import GatedModel
from nodeprune.runs import CIRCUIT_FILE
from nodeprune.splits import build_task_data
from nodeprune.tasks.custom import CustomTask


@pytest.fixture(scope="session")
def model_dir(tiny_llama_dir):
    return tiny_llama_dir


def _pair(a: str, b: str) -> str:
    return json.dumps(
        {
            "clean": f"When {a} and {b} went to the store, {b} gave a drink to",
            "corrupted": f"When {b} and {a} went to the store, {a} gave a drink to",
            "answer": f" {a}",
            "distractor": f" {b}",
        }
    )


def _data(llama_model, tmp_path, lines):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    gated = GatedModel(llama_model, ["attention_head"])
    try:
        sizes = {"train": 100, "validation": 0, "test": 100}
        return build_task_data(gated, CustomTask.from_file(path), sizes, 0, False)
    finally:
        gated.remove()


def test_a_task_file_of_one_repeated_line_is_refused_not_tested_on_training_data(
    llama_model, tmp_path
):
    with pytest.raises(NodepruneError, match="all 2 test prompts are also training prompts"):
        _data(llama_model, tmp_path, [_pair("Mary", "John")] * 10)


def test_a_test_split_mostly_made_of_training_prompts_is_announced(llama_model, tmp_path, capsys):
    def marked(a: str, b: str, split: str) -> str:
        return json.dumps({**json.loads(_pair(a, b)), "split": split})

    lines = [marked("Mary", "John", "train")] * 5 + [marked("Mary", "John", "test")] * 3
    data = _data(llama_model, tmp_path, [*lines, marked("Alice", "Henry", "test")])
    assert len(data.test) == 1
    err = capsys.readouterr().err
    assert "only 1 of the 4 test prompts are not also training prompts" in err


@pytest.fixture
def circuit_file(model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(model_dir, out, "--lam", "0") == 0
    capsys.readouterr()
    return out / CIRCUIT_FILE


@pytest.mark.parametrize("n", ["0", "-5", "2000000"])
def test_evaluate_refuses_a_number_of_prompts_out_of_range(circuit_file, capsys, n):
    with pytest.raises(SystemExit) as info:  # an argument error, before any work
        main(["evaluate", str(circuit_file), "--n", n])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --n: must be in [1, 1000000], got {n}" in err and "Traceback" not in err


def _unloadable(circuit_file):
    """The circuit, pointing at a model that does not load: whatever is said before the
    model is loaded is said without hours of work."""
    data = json.loads(circuit_file.read_text())
    data["model"] = str(circuit_file.parent / "no-such-model")
    circuit_file.write_text(json.dumps(data))
    return circuit_file


def test_evaluate_on_a_huge_number_of_prompts_warns_first(circuit_file, capsys):
    assert main(["evaluate", str(_unloadable(circuit_file)), "--n", "600000"]) == 2
    err = capsys.readouterr().err
    assert "warning: evaluate --n 600,000" in err and "hours" in err
    assert err.index("warning") < err.index("nodeprune: error")


def test_a_huge_training_set_is_announced_before_the_model_is_loaded(model_dir, tmp_path, capsys):
    argv = ["discover", "--model", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "r"),
            "--n-train", "1000000", "--quiet"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    total = 1_000_000 + DiscoveryConfig().n_val + DiscoveryConfig().n_test
    assert f"warning: {total:,} prompts (n_train 1,000,000" in err and "hours" in err
    assert err.index("warning") < err.index("nodeprune: error")


def test_reference_log_probs_that_cannot_fit_in_memory_are_refused(llama_model, monkeypatch):
    monkeypatch.setattr(runcost, "_physical_memory", lambda: 1_000_000_000)
    runcost.check_reference_memory(llama_model, 1000)
    with pytest.raises(NodepruneError, match=r"n_train 1,000,000 needs 2\.0 GB .*lower --n-train"):
        runcost.check_reference_memory(llama_model, 1_000_000)


def test_a_run_estimated_to_take_long_is_announced(model_dir, tmp_path, capsys, monkeypatch):
    assert run(model_dir, tmp_path / "quick", "--lam", "0", "--steps", "8") == 0
    assert "steps left take about" not in capsys.readouterr().err
    monkeypatch.setattr(runcost, "LONG_RUN_SECONDS", 0.0)
    assert run(model_dir, tmp_path / "long", "--lam", "0", "--steps", "8") == 0
    err = capsys.readouterr().err
    assert "s a step, the 4 steps left take about" in err and "--resume" in err
