"""Optimizers for the gate logits.

**Why not plain AdamW for every granularity.** Adam divides each parameter's step by the
running RMS of *its own* gradient, so a gate whose only gradient is the tiny, constant
sparsity term moves at the full learning rate, exactly as fast as a gate the KL cares
about. Gates whose hard-concrete sample sat at 1 in most steps (log-alpha near its
start) get no KL gradient at all: on SmolLM2 IOI with every granularity on, a layer
gate's KL gradient at the start is about 1e-3 (10x the sparsity gradient, pointing
open) when its sample falls inside (0, 1), and exactly 0 otherwise. AdamW's normalised
steps then carry such gates down at lr = 0.5 per step, and the momentum carries them
past the region where the KL could stop them: a fifth of the layers were closed by
step 25 (log-alpha down to -8), with the validation faithfulness at 0.24. A closed
layer also silences every gate below it, so nothing brings it back.

**Granular Adam** keeps Adam's per-gate first moment but shares the second moment
within each granularity (one running mean of the squared gradient per group). A
granularity's gates then move in proportion to how much the objective cares about each
of them relative to its peers: a decisive gate at about the learning rate (never more:
the step is clipped at Adam's own bound), a gate pushed only by the sparsity term at a
small fraction of it. The scale still adapts per
granularity, where the gradients differ by orders of magnitude (a layer gate's KL
gradient is ~1000x a neuron's).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


class GranularAdam(torch.optim.Optimizer):
    """Adam with one second-moment estimate per group of entries (``groups``: slices
    of the single flat parameter), decoupled weight decay as in AdamW."""

    def __init__(
        self,
        params: Iterable[Tensor],
        groups: list[slice],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1 or len(self.param_groups[0]["params"]) != 1:
            raise ValueError("GranularAdam takes the single flat gate parameter")
        self.groups = list(groups)
        index = torch.empty(self.param_groups[0]["params"][0].numel(), dtype=torch.long)
        for i, s in enumerate(self.groups):
            index[s] = i
        self._index = index

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        group = self.param_groups[0]
        p = group["params"][0]
        if p.grad is None:
            return None
        grad = p.grad
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros(len(self.groups), dtype=p.dtype, device=p.device)
        beta1, beta2 = group["betas"]
        state["step"] += 1
        t = float(state["step"])
        index = self._index.to(p.device)
        mean_sq = torch.zeros_like(state["exp_avg_sq"]).index_add_(0, index, grad * grad)
        counts = torch.bincount(index, minlength=len(self.groups)).to(p.dtype)
        mean_sq = mean_sq / counts.clamp(min=1)
        state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
        state["exp_avg_sq"].mul_(beta2).add_(mean_sq, alpha=1 - beta2)
        m_hat = state["exp_avg"] / (1 - beta1**t)
        v_hat = state["exp_avg_sq"] / (1 - beta2**t)
        denom = v_hat.sqrt().add_(group["eps"])[index]
        if group["weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])
        # Never a longer step than Adam's own (about lr): a single gate whose gradient
        # dwarfs its group's RMS would otherwise jump across the whole range at once.
        p.add_((m_hat / denom).clamp_(-1.0, 1.0), alpha=-group["lr"])
        return None


def build_optimizer(
    name: str, param: Tensor, groups: list[slice], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    if name == "granular_adam":
        return GranularAdam([param], groups, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW([param], lr=lr, weight_decay=weight_decay)
