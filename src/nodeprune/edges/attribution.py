"""Edge attribution patching (EAP; Syed et al. 2023) on the edge-gated pass.

An edge's attribution is the first-order effect of the edge on the task metric: the
gradient of the mean task metric (logit difference by default) with respect to the
edge's gate, at every node of the model a candidate and every edge open. At that point
the edge pass is the full model's, and the downstream input reads ``resid - (1 - m_ud)
(out_u - abl_u)``, so the gradient is EAP's ``(out_u - abl_u) . grad_{input_d}(metric)``:
clean minus ablated output of the parent times the gradient at the child's input, with a
head's query, key and value inputs apart (under grouped-query attention one key and one
value input per key/value head, shared by the EAP-IG edges into its query heads).

One backward pass per batch differentiates every edge at once: the pass is forward.py's
``EdgeModel`` over the full-model graph (``EdgeGraph.full``), gates set to ones with
``requires_grad``. Memory is the full-model edge formulation's (one residual-stream
difference per node of the model), so batches are small.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..circuit import Circuit
from ..errors import NodepruneError
from ..prompts import PromptBatch
from ..workbench import Workbench
from .config import EdgeConfig
from .export import eap_edge_index
from .forward import EdgeModel
from .graph import EdgeGraph
from .layout import edge_layout

#: What the attribution of an edge is, as the export's metadata says it.
ATTRIBUTION_NOTE = (
    "d(mean task metric)/d(edge gate) at every node a candidate and every edge open "
    "(edge attribution patching: (clean - ablated parent output) . gradient at the "
    "child's input; a head's q, k and v inputs apart), ranked by its absolute value"
)


@dataclass(frozen=True)
class EdgeAttribution:
    """The attribution of every EAP-IG edge of a model (signed; rank by ``abs``)."""

    scores: dict[str, float]  # EAP-IG edge name -> d(mean metric)/d(gate)
    prompts: int  # how many train prompts the mean is over
    parallel: bool  # whether the graph is EAP-IG's parallel one

    def metadata(self) -> dict[str, object]:
        return {"prompts": self.prompts, "edges": len(self.scores), "score": ATTRIBUTION_NOTE}


def full_edge_model(bench: Workbench) -> EdgeModel:
    """Edge hooks over every node of the workbench's model (the caller removes them)."""
    graph = EdgeGraph.full(bench.dims, parallel=edge_layout(bench.gated.model).parallel)
    return EdgeModel(bench.gated, graph)


def mean_metric(bench: Workbench, edges: EdgeModel, data: PromptBatch, gates: Tensor) -> Tensor:
    """The task metric averaged over ``data`` with the edge gates ``gates`` (one per edge
    of ``edges.graph``, flat), every node open; differentiable in ``gates``."""
    total = torch.zeros((), dtype=torch.float64)
    for part in data.batches(EdgeConfig.batch_size):
        part = part.to(bench.device)
        ablated = bench.ablator.values(part)
        split = edges.graph.split(gates.to(device=bench.device))
        logits = edges.edge_logits(
            part.clean_ids, part.attention_mask, part.answer_pos, {}, split, ablated
        )
        total = total + bench.task.metric(logits, part).sum().double().cpu()
    return total / len(data)


def edge_gradients(bench: Workbench, edges: EdgeModel, data: PromptBatch) -> Tensor:
    """d(mean task metric)/d(m_e) at all gates 1, per edge of ``edges.graph`` (flat)."""
    like = bench.like
    total = torch.zeros(edges.graph.n_edges, dtype=torch.float64)
    for part in data.batches(EdgeConfig.batch_size):  # one backward pass per batch
        gates = torch.ones(edges.graph.n_edges, dtype=like.dtype, requires_grad=True)
        with torch.enable_grad():
            metric = mean_metric(bench, edges, part, gates) * len(part)
            (grad,) = torch.autograd.grad(metric, gates)
        total += grad.double()
    return total / len(data)


def edge_attribution(bench: Workbench, prompts: int) -> EdgeAttribution:
    """The attribution of every edge on the first ``prompts`` train prompts of ``bench``
    (a workbench with every granularity hooked, e.g. ``edges.training.edge_workbench``)."""
    if prompts < 1:
        raise NodepruneError(f"edge attribution needs at least 1 prompt, got {prompts}")
    train = bench.data.train
    data = train.select(slice(0, min(prompts, len(train))))
    if len(data) == 0:
        raise NodepruneError("the run has no train prompts to attribute the edges on")
    with full_edge_model(bench) as edges:
        grads = edge_gradients(bench, edges, data)
        index = eap_edge_index(edges.graph)
    scores = grads.tolist()
    return EdgeAttribution(
        {name: scores[i] for name, i in index.items()}, len(data), edges.graph.parallel
    )


def circuit_attribution(node: Circuit, prompts: int) -> EdgeAttribution:
    """The edge attribution for a saved node circuit: its model (loaded with its run's
    dtype and device) on the first ``prompts`` train prompts of its run's workbench (task,
    ablation, prompt seed and sizes as the circuit's config says)."""
    from ..models import load_model
    from .training import edge_workbench

    saved = node.config
    loaded = load_model(
        node.model, dtype=saved.get("dtype", "float32"), device=saved.get("device", "cpu")
    )
    with edge_workbench(loaded, node) as bench:
        return edge_attribution(bench, prompts)
