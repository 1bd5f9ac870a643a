"""The terminal summary names each task's own metric."""

from __future__ import annotations

from nodeprune.summary import metrics_table, task_metric_label


def test_task_metric_label_is_used():
    metrics = {"logit_diff": 0.5, "logit_diff_full": 0.6, "normalized_faithfulness": 0.8}
    assert task_metric_label("ioi") == "logit diff"
    greater = task_metric_label("greater_than")
    assert greater != "logit diff"
    table = metrics_table(metrics, greater)
    assert f"{greater}, circuit" in table and "logit diff" not in table
    assert "logit diff, full model" in metrics_table(metrics)
    assert task_metric_label("custom:file.jsonl") == "logit diff"


def test_target_line_reports_validation_and_warns_on_a_test_miss():
    from nodeprune.architectures.base import ModelDims
    from nodeprune.circuit import Circuit, full_masks
    from nodeprune.summary import circuit_summary

    dims = ModelDims(n_layers=1, n_heads=2, head_dim=2, d_model=4, d_mlp=4, n_kv_heads=2)
    masks = full_masks(dims)
    masks["attention_head"][0, 1] = False
    c = Circuit("tiny", "ioi", "corrupted", 0, dims, masks, ["attention_head"])
    c.extra["target"] = {"kind": "faithfulness", "value": 0.9, "validation": 0.91,
                         "threshold": 0.3}  # fmt: skip
    c.metrics = {"normalized_faithfulness": 0.93}
    text = circuit_summary(c)
    assert "target: normalized faithfulness >= 0.9" in text and "0.9100" in text
    assert "WARNING: the test faithfulness" not in text
    assert "lowest-ranked" not in text  # a file from before the ranking's cut
    c.metrics = {"normalized_faithfulness": 0.8}
    assert "WARNING: the test faithfulness 0.8000" in circuit_summary(c)
    c.extra["target"]["gates_dropped"] = 17
    assert "the 17 lowest-ranked gates dropped" in circuit_summary(c)


def test_a_run_says_where_its_time_went(llama_model):
    import time

    from conftest import tiny_discovery_config

    from nodeprune import Discovery
    from nodeprune.summary import PHASES, circuit_summary

    started = time.perf_counter()
    cfg = tiny_discovery_config(steps=4, n_val=16, target_kl=0.5, target_every=2)
    with Discovery(llama_model, cfg) as run:
        circuit = run.run(progress=False)
    wall = time.perf_counter() - started
    timings = circuit.timings
    assert {key for key, _ in PHASES} | {"measure_seconds"} <= set(timings)
    assert all(value >= 0 for value in timings.values())
    assert timings["measure_seconds"] > 0  # two measurements at steps 2 (and not 4, the last)
    assert timings["measure_seconds"] <= timings["train_seconds"]  # they are part of training
    assert sum(timings[key] for key, _ in PHASES) <= wall + 0.05
    assert "time: set-up" in circuit_summary(circuit)
    assert "validation measurements" in circuit_summary(circuit)
