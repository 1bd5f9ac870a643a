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
    c.metrics = {"normalized_faithfulness": 0.8}
    assert "WARNING: the test faithfulness 0.8000" in circuit_summary(c)
