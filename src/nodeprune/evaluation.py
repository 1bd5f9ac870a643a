"""Metrics of a binary circuit on held-out prompts."""

from __future__ import annotations

import torch
from torch import Tensor

from .ablations import Ablator
from .data import PromptBatch
from .intervention import GatedModel
from .objective import kl_full_to_circuit
from .tasks.base import Task

METRIC_KEYS = (
    "kl",
    "logit_diff",
    "logit_diff_full",
    "logit_diff_ablated",
    "normalized_faithfulness",
    "accuracy",
    "exact_match",
    "n",
)


def normalized_faithfulness(ld_circuit: float, ld_full: float, ld_ablated: float) -> float:
    """(LD_circuit - LD_ablated) / (LD_full - LD_ablated); nan when full == ablated."""
    denom = ld_full - ld_ablated
    if abs(denom) < 1e-12:
        return float("nan")
    return (ld_circuit - ld_ablated) / denom


@torch.no_grad()
def evaluate_gates(
    gated: GatedModel,
    ablator: Ablator,
    task: Task,
    data: PromptBatch,
    gates: dict[str, Tensor],
    batch_size: int = 32,
) -> dict[str, float]:
    """Run full, circuit and fully-ablated models on ``data``; return the metrics."""
    device = gated.loaded.device
    sums = {"kl": 0.0, "ld": 0.0, "ld_full": 0.0, "ld_abl": 0.0, "acc": 0.0, "em": 0.0}
    closed = {g: torch.zeros_like(v) for g, v in gates.items()}
    for part in data.batches(batch_size):
        part = part.to(device)
        args = (part.clean_ids, part.attention_mask, part.answer_pos)
        ablated = ablator.values(part)
        full = gated.plain_logits(*args)
        circuit = gated.gated_logits(*args, gates=gates, ablated=ablated)
        none = gated.gated_logits(*args, gates=closed, ablated=ablated)
        full_lp = torch.log_softmax(full, -1)
        sums["kl"] += float(kl_full_to_circuit(full_lp, circuit).sum())
        sums["ld"] += float(task.metric(circuit, part).sum())
        sums["ld_full"] += float(task.metric(full, part).sum())
        sums["ld_abl"] += float(task.metric(none, part).sum())
        sums["acc"] += float(task.correct(circuit, part).float().sum())
        sums["em"] += float((circuit.argmax(-1) == full.argmax(-1)).float().sum())
    n = len(data)
    ld, ld_full, ld_abl = sums["ld"] / n, sums["ld_full"] / n, sums["ld_abl"] / n
    return {
        "kl": sums["kl"] / n,
        "logit_diff": ld,
        "logit_diff_full": ld_full,
        "logit_diff_ablated": ld_abl,
        "normalized_faithfulness": normalized_faithfulness(ld, ld_full, ld_abl),
        "accuracy": sums["acc"] / n,
        "exact_match": sums["em"] / n,
        "n": n,
    }


def evaluate_circuit(
    loaded,
    circuit,
    seed: int | None = None,
    n_test: int | None = None,
    task: Task | None = None,
    check_name: bool = True,
) -> dict[str, float]:
    """Recompute a saved circuit's metrics: by default on the same held-out test
    prompts as at discovery (same seed and sizes); with ``seed``, on fresh ones.
    ``check_name=False`` accepts the same model under another name or path."""
    from .config import DiscoveryConfig
    from .task_data import build_task_data
    from .tasks import resolve_task

    circuit.check_matches(loaded.dims, loaded.name, check_name=check_name)
    cfg = DiscoveryConfig.from_dict(circuit.config, source="circuit config").validate()
    task = task or resolve_task(circuit.task, cfg.task_file)
    gated = GatedModel(loaded, circuit.enabled)
    try:
        sizes = {"train": cfg.n_train, "test": n_test or cfg.n_test}
        data = build_task_data(
            gated,
            task,
            sizes,
            cfg.seed if seed is None else seed,
            cfg.filter,
            cfg.eval_batch_size,
        )
        ablator = Ablator(circuit.ablation, gated).fit(data.train, cfg.eval_batch_size)
        like = next(loaded.model.parameters())
        return evaluate_gates(
            gated, ablator, task, data.test, circuit.gate_values(like), cfg.eval_batch_size
        )
    finally:
        gated.remove()
