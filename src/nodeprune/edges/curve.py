"""Edge-level faithfulness curve, CPR and CMD, from nodeprune's own evaluation.

The x-axis is the fraction of the *model's* edges kept (the edges of every node, counted
as the edge phase gates them: a head's query, key and value inputs, one key and value
per key/value head under grouped-query attention), so it reads like MIB's edge curves.
At each of MIB's sizes the circuit is the top-k candidate edges by their final log-alpha
(the edge phase's own ranking), scored on the test prompts; sizes past the node circuit's
candidate edges cannot be ranked by the edge phase and are left out, and the node
circuit itself (every candidate edge kept) is the last measured point. CPR and CMD are
the areas of :mod:`nodeprune.metrics` over [0, 1], with (0, 0) and (1, 1) added (the
full model, every edge kept, has faithfulness 1 by definition).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..metrics.cmd import cmd
from ..metrics.cpr import cpr
from .graph import EdgeGraph

#: The sizes MIB scores edge circuits at (fractions of the model's edges).
CURVE_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def top_k(log_alpha: torch.Tensor, k: int) -> torch.Tensor:
    """The mask of the ``k`` most open edges (ties by position: a stable order)."""
    order = torch.sort(log_alpha.float(), descending=True, stable=True).indices
    mask = torch.zeros(log_alpha.numel(), dtype=torch.bool)
    mask[order[:k]] = True
    return mask


def edge_curve(phase: Any, fractions: tuple[float, ...] = CURVE_FRACTIONS) -> dict[str, Any]:
    """The curve of a trained :class:`~nodeprune.edges.training.EdgeDiscovery`."""
    log_alpha = phase.log_alpha.detach().cpu()
    n_candidates = log_alpha.numel()
    n_model = EdgeGraph.full(phase.node.dims, parallel=phase.graph.parallel).n_edges
    sizes = sorted({round(f * n_model) for f in fractions if 0 < round(f * n_model) < n_candidates})
    points = []
    for k in [*sizes, n_candidates]:
        metrics = phase.evaluate(top_k(log_alpha, k))
        points.append(
            {
                "edges": k,
                "fraction_of_model_edges": k / n_model,
                "normalized_faithfulness": float(metrics["normalized_faithfulness"]),
                "kl": float(metrics["kl"]),
            }
        )
    usable = [p for p in points if math.isfinite(p["normalized_faithfulness"])]
    xs = [p["fraction_of_model_edges"] for p in usable]
    ys = [p["normalized_faithfulness"] for p in usable]
    return {
        "x": "fraction_of_model_edges: kept edges over every edge of the model (the edge "
        "phase's gates: q, k, v per head, one k and v per key/value head)",
        "y": "normalized_faithfulness on the test prompts",
        "ranking": "top-k candidate edges by final log-alpha; the last point keeps every "
        "candidate edge (the node circuit)",
        "model_edges": n_model,
        "candidate_edges": n_candidates,
        "points": points,
        "area": {"cpr": cpr(xs, ys), "cmd": cmd(xs, ys), "points": len(usable)},
        "area_rule": "piecewise linear over [0, 1]; (0, 0) and (1, 1) added",
    }
