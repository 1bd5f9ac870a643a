"""Metrics of a binary circuit on held-out prompts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .ablator import Ablator
from .intervention import Ablated, GatedModel
from .objective import kl_full_to_circuit
from .prompts import PromptBatch
from .tasks.base import Task

if TYPE_CHECKING:
    from .workbench import Workbench

METRIC_KEYS = (
    "kl",
    "logit_diff",
    "logit_diff_full",
    "logit_diff_ablated",
    "normalized_faithfulness",
    "normalized_faithfulness_low",
    "normalized_faithfulness_high",
    "faithfulness_defined",
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


#: Bootstrap resamples of the test prompts behind the faithfulness interval.
BOOTSTRAP_DRAWS = 2000
#: The normalized faithfulness is a ratio; it means something only when its denominator
#: (full minus fully-ablated metric) is reliably away from zero. It counts as undefined
#: when more than this share of the bootstrap resamples give a denominator of the other
#: sign (or zero): then the ratio's resamples spread over both infinities, and a point
#: estimate of 23.6 can sit outside its own interval [-5.2, 6.9] (seen on a random model).
MAX_DENOMINATOR_FLIPS = 0.005


@dataclass(frozen=True)
class FaithfulnessEstimate:
    """Normalized faithfulness with its percentile-bootstrap interval, from one
    estimator (the ratio of the mean metrics), or undefined with the reason."""

    value: float
    low: float
    high: float
    defined: bool
    denominator: float

    def metrics(self) -> dict[str, float]:
        return {
            "normalized_faithfulness": self.value,
            "normalized_faithfulness_low": self.low,
            "normalized_faithfulness_high": self.high,
            "faithfulness_defined": float(self.defined),
        }


def estimate_faithfulness(
    ld: Tensor, ld_full: Tensor, ld_ablated: Tensor, level: float = 0.95, seed: int = 0
) -> FaithfulnessEstimate:
    """The normalized faithfulness of per-prompt metrics, its interval and whether it
    is defined at all.

    The estimate on a few dozen prompts moves by several hundredths between prompt
    sets (README, Calibration), so every figure comes with this interval. The point
    estimate is the statistic the bootstrap resamples (ratio of means). The resampling
    uses its own seeded generator: the same prompts give the same interval.
    """
    nan = float("nan")
    means = torch.stack([ld, ld_full, ld_ablated]).double().mean(-1)
    denom = float(means[1] - means[2])
    if ld.numel() == 0 or abs(denom) < 1e-12:
        return FaithfulnessEstimate(nan, nan, nan, False, denom)
    value = float(means[0] - means[2]) / denom
    n = ld.numel()
    if n < 2:
        return FaithfulnessEstimate(value, nan, nan, True, denom)
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (BOOTSTRAP_DRAWS, n), generator=generator)
    values = torch.stack([ld, ld_full, ld_ablated]).double()[:, idx].mean(-1)
    denoms = values[1] - values[2]
    flips = float(((denoms * denom) <= 1e-24).double().mean())
    if flips > MAX_DENOMINATOR_FLIPS:
        return FaithfulnessEstimate(nan, nan, nan, False, denom)
    faith = (values[0] - values[2]) / denoms
    tail = (1.0 - level) / 2
    q = torch.tensor([tail, 1.0 - tail], dtype=faith.dtype)
    low, high = (float(x) for x in torch.quantile(faith, q))
    return FaithfulnessEstimate(value, low, high, True, denom)


def faithfulness_interval(
    ld: Tensor, ld_full: Tensor, ld_ablated: Tensor, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """The interval of :func:`estimate_faithfulness` alone (nan when undefined)."""
    estimate = estimate_faithfulness(ld, ld_full, ld_ablated, level, seed)
    return estimate.low, estimate.high


@torch.no_grad()
def evaluate_gates(
    gated: GatedModel,
    ablator: Ablator,
    task: Task,
    data: PromptBatch,
    gates: dict[str, Tensor],
    batch_size: int = 32,
    circuit_logits: Callable[[PromptBatch, Ablated], Tensor] | None = None,
) -> dict[str, float]:
    """Run full, circuit and fully-ablated models on ``data``; return the metrics.

    ``circuit_logits(batch, ablated)`` replaces the circuit's pass (the edge phase's
    edge-gated pass); the fully-ablated model is still every gate of ``gates`` closed,
    so node and edge circuits are measured against the same two ends."""
    device = gated.loaded.device
    sums = {"kl": 0.0, "ld": 0.0, "ld_full": 0.0, "ld_abl": 0.0, "acc": 0.0, "em": 0.0}
    closed = {g: torch.zeros_like(v) for g, v in gates.items()}
    per_example: dict[str, list[Tensor]] = {"ld": [], "ld_full": [], "ld_abl": []}
    for part in data.batches(batch_size):
        part = part.to(device)
        args = (part.clean_ids, part.attention_mask, part.answer_pos)
        ablated = ablator.values(part)
        full = gated.plain_logits(*args)
        if circuit_logits is None:
            circuit = gated.gated_logits(*args, gates=gates, ablated=ablated)
        else:
            circuit = circuit_logits(part, ablated)
        none = gated.gated_logits(*args, gates=closed, ablated=ablated)
        full_lp = torch.log_softmax(full, -1)
        sums["kl"] += float(kl_full_to_circuit(full_lp, circuit).sum())
        for key, logits in (("ld", circuit), ("ld_full", full), ("ld_abl", none)):
            values = task.metric(logits, part).float().cpu()
            sums[key] += float(values.sum())
            per_example[key].append(values)
        sums["acc"] += float(task.correct(circuit, part).float().sum())
        sums["em"] += float((circuit.argmax(-1) == full.argmax(-1)).float().sum())
    n = len(data)
    ld, ld_full, ld_abl = sums["ld"] / n, sums["ld_full"] / n, sums["ld_abl"] / n
    estimate = estimate_faithfulness(*(torch.cat(v) for v in per_example.values()))
    return {
        "kl": sums["kl"] / n,
        "logit_diff": ld,
        "logit_diff_full": ld_full,
        "logit_diff_ablated": ld_abl,
        **estimate.metrics(),
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
    from .config import DiscoveryConfig, config_with
    from .tasks import resolve_task
    from .workbench import Workbench

    circuit.check_matches(loaded.dims, loaded.name, check_name=check_name)
    saved = DiscoveryConfig.from_saved(circuit.config, source="circuit config").validate()
    cfg = config_with(saved, {"ablation": circuit.ablation})
    task = task or resolve_task(circuit.task, cfg.task_file)
    sizes = {"train": cfg.n_train, "test": n_test or cfg.n_test}  # no validation prompts
    with Workbench.for_config(
        loaded, cfg, task, granularities=circuit.enabled, sizes=sizes, data_seed=seed
    ) as bench:
        return evaluate_on(bench, circuit.gate_values(bench.like))


def evaluate_on(
    bench: Workbench, gates: dict[str, Tensor], split: str = "test"
) -> dict[str, float]:
    """:func:`evaluate_gates` on a workbench's prompts (default: its test split)."""
    data = getattr(bench.data, split)
    return evaluate_gates(bench.gated, bench.ablator, bench.task, data, gates, bench.batch_size)
