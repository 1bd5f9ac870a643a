"""Circuits of given per-granularity sizes from node scores: top-k, top-down.

Granularities are filled parents first. A node is a candidate only if all its ancestors
are kept, so the k nodes of a child granularity are drawn from inside the kept parents
(the k attention neurons come from the kept heads) and the requested sizes survive
:func:`nodeprune.circuit.make_consistent` (up to parents none of whose children were
picked, which it prunes). Random circuits are the same selection with random scores.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..architectures.base import ModelDims
from ..circuit import full_masks, make_consistent
from ..errors import NodepruneError
from ..granularity import GRANULARITIES


def _parent_mask(masks: dict[str, Tensor], name: str) -> Tensor:
    """The (already ancestor-consistent) parent mask broadcast to ``name``'s shape."""
    shape = masks[name].shape
    parent_name = GRANULARITIES[name].parent
    if parent_name is None:
        return torch.ones(shape, dtype=torch.bool)
    parent = masks[parent_name]
    return parent.reshape(parent.shape + (1,) * (len(shape) - parent.dim())).expand(shape)


def select_top_k(
    scores: dict[str, Tensor],
    counts: dict[str, int],
    dims: ModelDims,
    enabled: list[str],
) -> dict[str, Tensor]:
    """Masks (every granularity) keeping, per enabled granularity, the ``counts[g]``
    highest-scoring nodes whose ancestors are kept; hierarchically consistent."""
    masks = full_masks(dims)
    for name in GRANULARITIES:
        allowed = _parent_mask(masks, name)
        if name not in enabled:
            masks[name] = allowed.clone()
            continue
        if name not in scores or name not in counts:
            raise NodepruneError(f"no score or size given for granularity {name}")
        score = scores[name].float().cpu()
        if tuple(score.shape) != tuple(masks[name].shape):
            raise NodepruneError(
                f"scores of {name} have shape {tuple(score.shape)}, expected "
                f"{tuple(masks[name].shape)}"
            )
        k = max(0, min(int(counts[name]), int(allowed.sum())))
        ranked = score.masked_fill(~allowed, float("-inf")).flatten()
        picked = torch.zeros(ranked.numel(), dtype=torch.bool)
        if k > 0:
            picked[torch.topk(ranked, k).indices] = True
        masks[name] = picked.view(masks[name].shape)
    return make_consistent(masks, enabled)


def random_scores(
    dims: ModelDims, granularities: list[str], generator: torch.Generator
) -> dict[str, Tensor]:
    """Uniform random scores: top-k of them is a uniformly random circuit of size k."""
    return {g: torch.rand(GRANULARITIES[g].shape(dims), generator=generator) for g in granularities}


#: The scale at which every granularity is full (see :func:`scaled_counts`).
FULL_SCALE = 2.0


def scaled_counts(profile: dict[str, int], scale: float, dims: ModelDims) -> dict[str, int]:
    """Per-granularity sizes along one knob through ``profile``, from empty to full.

    Scale 0 is empty and 1 is ``profile`` itself; below 1 every size shrinks in proportion
    (``scale * k``), above 1 every granularity's size grows linearly towards its total,
    which all reach together at :data:`FULL_SCALE` (2), including granularities of which
    ``profile`` keeps nothing.
    """
    counts = {}
    for g, k in profile.items():
        total = GRANULARITIES[g].size(dims)
        if scale <= 1.0:
            counts[g] = int(round(max(scale, 0.0) * k))
        else:
            counts[g] = int(round(k + min(scale - 1.0, 1.0) * (total - k)))
    return counts


def scale_grid(scales: list[float]) -> list[float]:
    """``scales`` in [0, FULL_SCALE), plus FULL_SCALE, sorted and without duplicates."""
    return sorted({s for s in scales if 0 <= s < FULL_SCALE} | {FULL_SCALE})
