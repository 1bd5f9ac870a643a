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
