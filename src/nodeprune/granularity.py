"""The granularities at which nodeprune places gates, and how they nest.

Every granularity's gate tensor has a shape whose leading dimensions are its
parent's shape (``layer`` (L) -> ``attention_block`` (L) -> ``attention_head``
(L, H) -> ``attention_neuron`` (L, H, Dh)), so a node's effective gate (its own
gate times all its ancestors') is a broadcast product.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import NodepruneError

if TYPE_CHECKING:  # importing the architectures imports torch: not for the CLI's flags
    from .architectures.base import ModelDims


@dataclass(frozen=True)
class Granularity:
    name: str
    parent: str | None
    shape: Callable[[ModelDims], tuple[int, ...]]
    description: str

    def size(self, dims: ModelDims) -> int:
        n = 1
        for s in self.shape(dims):
            n *= s
        return n


_ALL = (
    Granularity("embedding", None, lambda d: (1,), "the token embedding"),
    Granularity("layer", None, lambda d: (d.n_layers,), "a whole layer (attention and MLP)"),
    Granularity("attention_block", "layer", lambda d: (d.n_layers,), "a layer's attention"),
    Granularity("mlp_block", "layer", lambda d: (d.n_layers,), "a layer's MLP"),
    Granularity("attention_head", "attention_block", lambda d: (d.n_layers, d.n_heads), "one head"),
    Granularity(
        "attention_neuron",
        "attention_head",
        lambda d: (d.n_layers, d.n_heads, d.head_dim),
        "one dimension of a head's output, before the output projection",
    ),
    Granularity(
        "mlp_neuron", "mlp_block", lambda d: (d.n_layers, d.d_mlp), "one MLP hidden neuron"
    ),
    Granularity(
        "mlp_output", "mlp_block", lambda d: (d.n_layers, d.d_model), "one MLP output dimension"
    ),
)

#: Registry, in topological order (parents before children).
GRANULARITIES: dict[str, Granularity] = {g.name: g for g in _ALL}


def granularity_names() -> list[str]:
    return list(GRANULARITIES)


def children(name: str) -> list[str]:
    return [g.name for g in _ALL if g.parent == name]


#: Enabled unless the user says otherwise. Whole-layer, MLP-output and embedding gates
#: are available (``--granularities all``), but with them on at the calibrated weights
#: the binarised SmolLM2 IOI circuit lost most of its faithfulness (README,
#: "Calibration"), so they are opt-in until their weights are calibrated.
DEFAULT_GRANULARITIES = (
    "attention_block",
    "mlp_block",
    "attention_head",
    "attention_neuron",
    "mlp_neuron",
)


def check_granularity_names(names: list[str]) -> list[str]:
    """Validate user-given names (``-`` or ``_``; ``all`` for every granularity),
    returning them in registry order."""
    from .suggest import closest

    normalised = [n.strip().replace("-", "_") for n in names if n.strip()]
    if normalised == ["all"]:
        return list(GRANULARITIES)
    for n in normalised:
        if n not in GRANULARITIES:
            raise NodepruneError(
                f"unknown granularity {n!r}{closest(n, GRANULARITIES)}; "
                f"choose from {', '.join(GRANULARITIES)}"
            )
    if not normalised:
        raise NodepruneError("no granularity enabled; enable at least one, e.g. attention_head")
    return [g for g in GRANULARITIES if g in normalised]
