"""Where the gates start: a seeded uniform spread, or the order of attribution scores.

``uniform`` (the original start): every log-alpha at ``init_log_alpha`` plus a uniform
spread of half-width ``init_spread`` drawn from the run's seed, so two seeds start from
two different random orders.

``attribution``: the same interval, but each gate's place in it is the rank of its
attribution score within its granularity: |d(task metric)/d(gate)| with every gate
open, one backward pass per batch of the train prompts (attribution patching; the same
first-order score as the attribution baseline, here for the gate of every enabled
granularity, so a head's score is the sum of its neurons'). The start no longer
depends on the seed, and a gate that the objective barely moves (most MLP neurons)
keeps an order that comes from the data instead of from the seed's draw.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .ablator import Ablator
from .gates import GateSet
from .granularity import GRANULARITIES
from .intervention import GatedModel
from .prompts import PromptBatch
from .tasks.base import Task


def gate_attribution(
    gated: GatedModel,
    ablator: Ablator,
    task: Task,
    data: PromptBatch,
    enabled: list[str],
    batch_size: int = 32,
) -> dict[str, Tensor]:
    """Mean d(task metric)/d(own gate) at every gate = 1, per enabled granularity.

    The KL to the full model is not used: with every gate open the circuit is the full
    model, where the KL is at its minimum and its gradient is zero."""
    dims, device = gated.dims, gated.loaded.device
    totals = {g: torch.zeros(GRANULARITIES[g].shape(dims)) for g in enabled}
    for part in data.batches(batch_size):
        part = part.to(device)
        gates = {
            g: torch.ones(GRANULARITIES[g].shape(dims), device=device, requires_grad=True)
            for g in enabled
        }
        ablated = ablator.values(part)
        with torch.enable_grad():
            logits = gated.gated_logits(
                part.clean_ids, part.attention_mask, part.answer_pos, gates, ablated
            )
            metric = task.metric(logits, part).sum()
            grads = torch.autograd.grad(metric, [gates[g] for g in enabled], allow_unused=True)
        for g, grad in zip(enabled, grads, strict=True):
            if grad is not None:  # a gate the metric does not reach scores 0
                totals[g] += grad.detach().float().cpu()
    return {g: t / len(data) for g, t in totals.items()}


def rank_positions(scores: Tensor) -> Tensor:
    """Each entry's place in [-1, 1] by the rank of |score| (-1: the smallest, 1: the
    largest; a single entry sits at 1). Equal scores are ordered by position."""
    flat = scores.flatten().abs()
    if flat.numel() == 1:
        return torch.ones_like(scores)
    order = torch.argsort(flat, stable=True)
    ranks = torch.empty_like(flat)
    ranks[order] = torch.arange(flat.numel(), dtype=flat.dtype)
    return (2 * ranks / (flat.numel() - 1) - 1).view(scores.shape)


def start_from_scores(
    gates: GateSet, scores: dict[str, Tensor], mean: float, spread: float
) -> None:
    """Set every scored granularity's log-alphas to ``mean + spread * rank position``
    (the others keep their uniform start)."""
    with torch.no_grad():
        for g, s in gates.slices.items():
            if g in scores:
                values = mean + spread * rank_positions(scores[g]).flatten()
                gates.log_alpha[s] = values.to(gates.log_alpha)
