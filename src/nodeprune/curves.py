"""Faithfulness-versus-size curves and their areas (CPR, CMD).

**Fraction of nodes kept.** Methods that prune at different granularities are put on one
axis by counting the finest units that make up heads and MLP blocks: attention neurons
(each dimension of a head's output, ``n_layers * n_heads * head_dim``) and MLP neurons
(``n_layers * d_mlp``). A unit counts as kept when it and all its ancestors (head,
attention or MLP block, layer) are kept, so a head kept whole by a coarse method counts
all its ``head_dim`` neurons, and a multi-granular circuit that keeps the head but only
some of its neurons counts only those. The fraction is kept units over all units (on
SmolLM2-135M: 17,280 attention neurons + 46,080 MLP neurons). Embedding and MLP output
dimensions are not counted: the embedding is a single node, and the MLP output dimensions
are another view of the same MLP blocks, whose neurons are counted already.

**Areas.** CPR and CMD of :mod:`nodeprune.metrics` integrate normalized faithfulness over
this fraction from 0 to 1 (piecewise linear; (0, 0) and (1, 1) added where not measured).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .circuit import make_consistent
from .granularity import where
from .metrics import cmd, cpr

#: The finest units over which "fraction of nodes kept" is counted (Granularity.units).
UNIT_GRANULARITIES = where(units=True)
#: Metrics copied from an evaluation into each curve point.
POINT_METRICS = ("normalized_faithfulness", "kl", "accuracy", "logit_diff", "exact_match")


def effective_masks(masks: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each node kept only if all its ancestors are (disabled granularities prune nothing)."""
    return make_consistent(masks, [])


def units_kept(masks: dict[str, Tensor]) -> dict[str, int]:
    eff = effective_masks(masks)
    # Only the units the model has: no expert neurons in a dense model's points.
    return {g: int(eff[g].sum()) for g in UNIT_GRANULARITIES if eff[g].numel()}


def fraction_kept(masks: dict[str, Tensor]) -> float:
    """Kept attention + MLP neurons (ancestors included) over all of them."""
    eff = effective_masks(masks)
    kept = sum(int(eff[g].sum()) for g in UNIT_GRANULARITIES)
    total = sum(eff[g].numel() for g in UNIT_GRANULARITIES)
    return kept / total


def mean_kept_fraction(kept: dict[str, int], total: dict[str, int]) -> float | None:
    """The *other* size measure, a sweep's (its rows' ``mean_kept_fraction`` in
    results.json/csv): the mean over the gated granularities
    of each one's kept fraction, each granularity counting equally (so a million MLP
    output dimensions do not drown out the few hundred heads). Not the curves' x-axis
    (:func:`fraction_kept`); None when nothing is gated."""
    fractions = [kept[g] / total[g] for g in kept]
    return sum(fractions) / len(fractions) if fractions else None


def curve_point(masks: dict[str, Tensor], metrics: dict[str, float], **extra: Any) -> dict:
    point: dict[str, Any] = {"fraction_kept": fraction_kept(masks)}
    point.update({k: float(metrics[k]) for k in POINT_METRICS if k in metrics})
    point.update(extra)
    return point


def mean_point(points: Sequence[dict], **extra: Any) -> dict:
    """The mean of several points (e.g. random draws), with the spread (std) of each."""
    keys = ["fraction_kept", *[k for k in POINT_METRICS if k in points[0]]]
    out: dict[str, Any] = {}
    spread: dict[str, float] = {}
    for key in keys:
        values = torch.tensor([float(p[key]) for p in points], dtype=torch.float64)
        out[key] = float(values.mean())
        spread[key] = float(values.std()) if len(points) > 1 else 0.0
    out["spread"] = spread
    out["draws"] = len(points)
    out.update(extra)
    return out


def sort_points(points: Sequence[dict]) -> list[dict]:
    return sorted(points, key=lambda p: (p["fraction_kept"], p["normalized_faithfulness"]))


def areas(points: Sequence[dict]) -> dict[str, float]:
    """CPR and CMD of one method's curve (points with a finite faithfulness only)."""
    usable = [p for p in points if math.isfinite(p["normalized_faithfulness"])]
    xs = [p["fraction_kept"] for p in usable]
    ys = [p["normalized_faithfulness"] for p in usable]
    return {"cpr": cpr(xs, ys), "cmd": cmd(xs, ys), "points": len(usable)}


def curves_document(curves: dict[str, list[dict]]) -> dict[str, Any]:
    """The content of curves.json."""
    methods = {m: sort_points(points) for m, points in curves.items() if points}
    return {
        "x": "fraction_kept: kept attention neurons + MLP neurons (with all ancestors kept) "
        "over all of them",
        "y": "normalized_faithfulness",
        "area_rule": "piecewise linear over [0, 1]; (0, 0) and (1, 1) added where not measured",
        "methods": methods,
        "area": {m: areas(points) for m, points in methods.items()},
    }
