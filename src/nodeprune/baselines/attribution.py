"""Attribution patching node scores (Nanda 2023; Syed et al. 2023), per granularity.

A node's score is the first-order estimate of what pruning it does to the task metric:
the gradient of the metric with respect to the node's gate at gates = 1, which for
nodeprune's gating ``a + m * (x - a)`` is exactly ``grad_x(metric) . (x - a)``, the
gradient times (clean - ablated) activation. All sites are differentiated in one backward
pass per batch; a head's score is the sum over its attention neurons, an MLP block's the
sum over its output dimensions (its output is what pruning the block replaces).

The metric is the task metric (logit difference by default), averaged over the prompts,
not the KL to the full model: at gates = 1 the circuit *is* the full model, where the KL
is at its minimum and its gradient is zero. Nodes are ranked by the absolute score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from ..ablator import Ablator
from ..gate_init import gate_attribution
from ..granularity import GRANULARITIES
from ..intervention import GatedModel
from ..prompts import PromptBatch
from ..tasks.base import Task
from .base import ScoreRequest
from .registry import ATTRIBUTION_GRANULARITIES

if TYPE_CHECKING:
    from ..workbench import Workbench

#: The granularities the attribution baseline scores and selects (Granularity.attribution).
#: The site-level gates that are differentiated; every scored granularity is a sum of them.
_SITE_GATES = tuple(
    g for g in GRANULARITIES if any(s.attribution == g for s in GRANULARITIES.values())
)


def site_gradients(
    gated: GatedModel,
    ablator: Ablator,
    task: Task,
    data: PromptBatch,
    batch_size: int = 32,
) -> dict[str, Tensor]:
    """d(mean task metric)/d(gate) at gates = 1 for attention neurons, MLP neurons and
    MLP output dimensions (disabled ancestors count as open, so these are site gates):
    the gates' start of ``gate_init="attribution"`` is the same gradient."""
    return gate_attribution(gated, ablator, task, data, list(_SITE_GATES), batch_size)


def signed_scores(site_grads: dict[str, Tensor]) -> dict[str, Tensor]:
    """Per scored granularity, the estimated change of the metric from keeping the node
    (minus the estimated change from pruning it)."""
    out = {}
    for name in ATTRIBUTION_GRANULARITIES:
        grads = site_grads[GRANULARITIES[name].attribution]
        extra = tuple(range(GRANULARITIES[name].ndim, grads.dim()))
        out[name] = grads.sum(extra) if extra else grads
    return out


def attribution_scores(
    gated: GatedModel,
    ablator: Ablator,
    task: Task,
    data: PromptBatch,
    batch_size: int = 32,
) -> dict[str, Tensor]:
    """Importance of every node of the scored granularities: |attribution|."""
    grads = site_gradients(gated, ablator, task, data, batch_size)
    return {g: s.abs() for g, s in signed_scores(grads).items()}


def attribution_baseline_scores(bench: Workbench, request: ScoreRequest) -> dict[str, Tensor]:
    """The baseline's score function: |attribution| on the workbench's train prompts."""
    return attribution_scores(
        bench.gated, bench.ablator, bench.task, bench.data.train, bench.batch_size
    )
