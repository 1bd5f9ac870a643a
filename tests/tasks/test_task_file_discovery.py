"""A discovery run on a custom task file, end to end on a tiny model: the circuit records
the file, and evaluation reads the same file and reproduces the metrics."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_discovery_config

from nodeprune import Circuit, Discovery
from nodeprune.errors import NodepruneError
from nodeprune.workbench import evaluate_circuit

NAMES = ["Mary", "John", "Alice", "Henry", "Lucy", "Eric", "Sam", "Ben", "Max", "Jane"]


def write_task_file(path, n: int = 30):
    lines = []
    for i in range(n):
        a, b = NAMES[i % 10], NAMES[(i // 10 + i + 1) % 10]
        lines.append(
            {
                "clean": f"When {a} and {b} went to the store, {b} gave a drink to",
                "corrupted": f"When {b} and {a} went to the store, {a} gave a drink to",
                "answer": f" {a}",
                "distractor": f" {b}",
            }
        )
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def config(task_file, **kw):
    base = {"task_file": str(task_file), "steps": 4, "n_train": 100, "n_val": 4, "n_test": 100}
    return tiny_discovery_config(**{**base, **kw})


def test_discovery_on_a_task_file_records_it_and_evaluation_reuses_it(llama_model, tmp_path):
    task_file = write_task_file(tmp_path / "pairs.jsonl")
    discovery = Discovery(llama_model, config(task_file))
    # Asked for more than the file holds: each split gets its whole pool (70/10/20).
    counts = discovery.data.counts
    assert [counts[s]["generated"] for s in ("train", "validation", "test")] == [21, 3, 6]
    circuit = discovery.run(progress=False)
    assert circuit.task == "custom:pairs.jsonl"
    assert circuit.config["task_file"] == str(task_file)
    # Library runs carry the file's checksum too (not only `nodeprune discover`).
    import hashlib

    assert circuit.extra["task_file_sha256"] == hashlib.sha256(task_file.read_bytes()).hexdigest()
    saved = Circuit.load(circuit.save(tmp_path / "circuit.json"))
    metrics = evaluate_circuit(llama_model, saved)
    for key, value in circuit.metrics.items():
        assert metrics[key] == pytest.approx(value, abs=1e-5, nan_ok=True), key


def test_a_missing_task_file_is_a_one_line_error(llama_model, tmp_path):
    with pytest.raises(NodepruneError, match="task file .*missing.jsonl does not exist"):
        Discovery(llama_model, config(tmp_path / "missing.jsonl"))
