"""Numerical health of a discovery run: stop at the first NaN/inf, say where and why.

A non-finite loss, gradient or gate logit never heals by itself: AdamW carries it into
its moment estimates and every later step is garbage. So the run stops at the first
one, before the optimizer applies it, and the last checkpoint on disk stays good.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .errors import NodepruneError

LOW_PRECISION = ("float16", "bfloat16")


class NumericalError(NodepruneError):
    """A NaN or inf in the loss, gradients or gates of a discovery run."""

    def __init__(self, message: str, step: int, quantity: str) -> None:
        super().__init__(message)
        self.step = step
        self.quantity = quantity


def is_finite(value: Tensor | float) -> bool:
    if isinstance(value, Tensor):
        return bool(torch.isfinite(value).all())
    return math.isfinite(value)


def likely_cause(quantity: str, dtype: str, lr: float) -> str:
    """The most plausible explanation for a non-finite ``quantity``, as advice."""
    if dtype in LOW_PRECISION and quantity in ("loss", "kl", "gradient"):
        return (
            f"the model's activations most likely overflowed in {dtype}; rerun with --dtype float32"
        )
    if quantity in ("gradient", "gates"):
        return f"the learning rate is most likely too high (lr {lr}); rerun with a lower --lr"
    if quantity == "sparsity":
        return "the gate logits are not finite; check init_log_alpha and init_spread"
    return (
        "the model's logits on the gated prompts are not finite; check the model "
        "(rerun with --dtype float32) and the ablation"
    )


def check_step(
    step: int, dtype: str, lr: float, quantity: str, value: Tensor | float, detail: str = ""
) -> None:
    """Raise a NumericalError naming ``step`` if ``value`` holds a NaN or inf."""
    if is_finite(value):
        return
    if isinstance(value, Tensor):
        shown = float(value.detach()) if value.numel() == 1 else "nan/inf"
    else:
        shown = value
    what = f"{quantity} is {shown}" if detail == "" else f"{quantity} is {shown} ({detail})"
    raise NumericalError(
        f"step {step}: {what}; {likely_cause(quantity, dtype, lr)}", step, quantity
    )
