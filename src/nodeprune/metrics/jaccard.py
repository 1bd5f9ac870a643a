"""Jaccard overlap of two binary masks (or node sets)."""

from __future__ import annotations

import numpy as np

from ..errors import NodepruneError


def jaccard(a: object, b: object) -> float:
    """|a & b| / |a | b| of two boolean masks of the same shape (torch tensors, numpy
    arrays or nested lists) or of two sets. Two empty selections are identical: 1.0."""
    if isinstance(a, set | frozenset) or isinstance(b, set | frozenset):
        sa, sb = set(a), set(b)  # type: ignore[arg-type]
        union = len(sa | sb)
        return len(sa & sb) / union if union else 1.0
    ma, mb = _as_bool(a), _as_bool(b)
    if ma.shape != mb.shape:
        raise NodepruneError(
            f"jaccard needs masks of the same shape, got {ma.shape} and {mb.shape}; "
            "compare circuits found on the same model"
        )
    union = int(np.logical_or(ma, mb).sum())
    return int(np.logical_and(ma, mb).sum()) / union if union else 1.0


def _as_bool(x: object) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(x).astype(bool)
