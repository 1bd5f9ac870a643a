"""The loss: faithfulness (KL to the full model, optional margin) plus L0 sparsity."""

from __future__ import annotations

import torch
from torch import Tensor


def kl_full_to_circuit(full_logprobs: Tensor, circuit_logits: Tensor) -> Tensor:
    """Per-example KL(full || circuit) over the next-token distribution [B]."""
    circuit_logprobs = torch.log_softmax(circuit_logits.float(), dim=-1)
    return (full_logprobs.exp() * (full_logprobs - circuit_logprobs)).sum(-1)


def sparsity_penalty(
    expected_l0: dict[str, Tensor], sizes: dict[str, int], lam_g: dict[str, float]
) -> Tensor:
    """sum_g lam_g * E[L0]_g / N_g over the enabled granularities."""
    terms = [lam_g[g] * l0.sum() / sizes[g] for g, l0 in expected_l0.items()]
    return torch.stack(terms).sum()


def sparsity_weight(step: int, total_steps: int, lam: float, warmup_fraction: float) -> float:
    """lam, ramped linearly from 0 over the first ``warmup_fraction`` of training."""
    warm = warmup_fraction * total_steps
    if warm <= 0:
        return lam
    return lam * min(1.0, (step + 1) / warm)


def total_loss(faithfulness: Tensor, sparsity: Tensor, lam: float, lam_now: float) -> Tensor:
    return (1.0 - lam) * faithfulness + lam_now * sparsity
