"""The granularities at which nodeprune places gates, and how they nest.

Every granularity's gate tensor has a shape whose leading dimensions are its
parent's shape (``layer`` (L) -> ``attention_block`` (L) -> ``attention_head``
(L, H) -> ``attention_neuron`` (L, H, Dh)), so a node's effective gate (its own
gate times all its ancestors') is a broadcast product.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING

from .errors import NodepruneError

if TYPE_CHECKING:  # importing the architectures imports torch: not for the CLI's flags
    from .architectures.base import ModelDims


#: The activation sites a gate can act on, in forward order (hooks: intervention.py;
#: each adapter says which module holds each site):
#:
#: * ``embed``      token-embedding output              [B, T, d_model]
#: * ``attn_z``     input of the attention output proj  [B, T, n_heads * head_dim]
#: * ``mlp_hidden`` input of the MLP down projection    [B, T, d_mlp]
#: * ``expert_hidden`` each routed expert's router-weighted hidden activations, the
#:   input of its slice of the fused down projection (mixture-of-experts models only;
#:   0 where the router did not choose the expert)  [B, T, n_experts * d_expert]
#: * ``mlp_out``    output of the MLP block             [B, T, d_model]
SITES = ("embed", "attn_z", "mlp_hidden", "expert_hidden", "mlp_out")
#: Sites reached from another site through an affine map: the MLP output is the down
#: projection of the MLP hidden neurons. Their common ancestors' gates must act at one
#: of the two only (intervention.site_plan decides which, by the ablation).
AFFINE_AFTER = {"mlp_out": "mlp_hidden"}


@dataclass(frozen=True)
class Granularity:
    """One kind of node, with every fact of the method about it (everything else reads
    these; adding a granularity is one entry in ``_ALL``)."""

    name: str
    parent: str | None
    shape: Callable[[ModelDims], tuple[int, ...]]
    description: str
    #: Progress-bar label.
    short: str
    #: Label in figures and tables (plural where it names many nodes).
    label: str
    #: The site whose activation the node's own gate multiplies, one gate per dimension
    #: of it; None for nodes that act through their descendants' sites.
    site: str | None = None
    #: One node per layer (leading dimension n_layers); False for the embedding.
    per_layer: bool = True
    #: The node is made of its children (a layer is its attention and its MLP), so it is
    #: pruned only when all of them are; otherwise each enabled child granularity is a
    #: complete view of it, any of which fully pruned prunes it (circuit.make_consistent).
    made_of_children: bool = False
    #: Its final gate log-alphas are stored with the circuit (``extra["scores"]``, ROC
    #: curves, MIB node scores); finer nodes are too many.
    scored: bool = False
    #: One node per activation dimension (thousands): stability keeps per-layer
    #: frequencies of these, per-node ones of the others.
    neurons: bool = False
    #: Counted in "fraction of nodes kept" (curves.py): the finest units heads and MLP
    #: blocks are made of.
    units: bool = False
    #: Gated by the coarse-pruning baseline (``nodeprune compare``).
    coarse: bool = False
    #: The attribution baseline's score of a node: the sum of the gate gradients of this
    #: site granularity inside it (None: not scored by attribution).
    attribution: str | None = None
    #: Column header in the compare table (None: no column).
    column: str | None = None
    #: Children with the same ``part_of`` name make up their parent together, each being
    #: one part of it rather than a complete view (a Qwen2-MoE MLP block is its shared
    #: expert's neurons and its routed experts): the parent is pruned only when every
    #: one of them is (circuit.make_consistent).
    part_of: str | None = None

    @property
    def ndim(self) -> int:
        """Number of dimensions of its gate tensor (the same for every model)."""
        any_dims = SimpleNamespace(
            n_layers=1, n_heads=1, head_dim=1, d_mlp=1, d_model=1, n_experts=1, d_expert=1
        )
        return len(self.shape(any_dims))  # type: ignore[arg-type]

    def size(self, dims: ModelDims) -> int:
        n = 1
        for s in self.shape(dims):
            n *= s
        return n

    def available(self, dims: ModelDims) -> bool:
        """Whether the model has these nodes (experts: only a mixture of experts; MLP
        neurons: not one whose MLP is only routed experts)."""
        return self.size(dims) > 0


_ALL = (
    Granularity(
        "embedding", None, lambda d: (1,), "the token embedding",
        short="emb", label="embedding", site="embed", per_layer=False,
    ),
    Granularity(
        "layer", None, lambda d: (d.n_layers,), "a whole layer (attention and MLP)",
        short="lay", label="layer", made_of_children=True, scored=True,
    ),
    Granularity(
        "attention_block", "layer", lambda d: (d.n_layers,), "a layer's attention",
        short="attn", label="attention block", scored=True,
    ),
    Granularity(
        "mlp_block", "layer", lambda d: (d.n_layers,), "a layer's MLP",
        short="mlp", label="MLP block", scored=True, coarse=True,
        attribution="mlp_output", column="MLP blocks",
    ),
    Granularity(
        "attention_head", "attention_block", lambda d: (d.n_layers, d.n_heads), "one head",
        short="head", label="heads", scored=True, coarse=True,
        attribution="attention_neuron", column="heads",
    ),
    Granularity(
        "attention_neuron", "attention_head", lambda d: (d.n_layers, d.n_heads, d.head_dim),
        "one dimension of a head's output, before the output projection",
        short="an", label="attention neurons", site="attn_z", neurons=True, units=True,
        attribution="attention_neuron", column="attn neurons",
    ),
    Granularity(
        "mlp_neuron", "mlp_block", lambda d: (d.n_layers, d.d_mlp), "one MLP hidden neuron",
        short="mn", label="MLP neurons", site="mlp_hidden", neurons=True, units=True,
        attribution="mlp_neuron", column="MLP neurons", part_of="mlp",
    ),
    Granularity(
        "expert", "mlp_block", lambda d: (d.n_layers, d.n_experts),
        "one routed expert of a mixture-of-experts MLP (its router-weighted output)",
        short="ex", label="experts", scored=True, part_of="mlp",
    ),
    Granularity(
        "expert_neuron", "expert", lambda d: (d.n_layers, d.n_experts, d.d_expert),
        "one hidden neuron of a routed expert",
        short="en", label="expert neurons", site="expert_hidden", neurons=True, units=True,
    ),
    Granularity(
        "mlp_output", "mlp_block", lambda d: (d.n_layers, d.d_model),
        "one MLP output dimension",
        short="mo", label="MLP output dims", site="mlp_out", neurons=True,
    ),
)  # fmt: skip

#: Registry, in topological order (parents before children).
GRANULARITIES: dict[str, Granularity] = {g.name: g for g in _ALL}


def where(**facts: object) -> tuple[str, ...]:
    """The granularities (registry order) with the given facts, e.g. ``where(units=True)``."""
    return tuple(
        g.name for g in _ALL if all(getattr(g, key) == value for key, value in facts.items())
    )


def ancestors(name: str) -> list[str]:
    """Parent, grandparent, ... of ``name``."""
    out = []
    parent = GRANULARITIES[name].parent
    while parent is not None:
        out.append(parent)
        parent = GRANULARITIES[parent].parent
    return out


def site_granularity(site: str) -> str:
    """The granularity whose own gates act at ``site`` (one per dimension)."""
    return next(g.name for g in _ALL if g.site == site)


def site_granularities(site: str) -> tuple[str, ...]:
    """The granularities whose gates act through ``site``: its own and its ancestors."""
    own = site_granularity(site)
    reach = {own, *ancestors(own)}
    return tuple(g for g in GRANULARITIES if g in reach)


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


#: What the default set gates in a mixture-of-experts model besides the above.
MOE_DEFAULT_GRANULARITIES = ("expert", "expert_neuron")


def granularities_for_model(names: Iterable[str], dims: ModelDims) -> list[str]:
    """``names`` (registry order) fitted to a model: the default set and ``all`` keep
    the granularities the model has (and the default set adds the experts of a
    mixture-of-experts model); a granularity named that it lacks is refused."""
    wanted = list(names)
    missing = [g for g in wanted if not GRANULARITIES[g].available(dims)]
    if set(wanted) == set(DEFAULT_GRANULARITIES) and dims.n_experts:
        wanted += MOE_DEFAULT_GRANULARITIES
    elif missing and set(wanted) not in (set(GRANULARITIES), set(DEFAULT_GRANULARITIES)):
        why = (
            "its MLP blocks are only routed experts (no dense hidden neurons)"
            if dims.n_experts
            else "it is a dense model (no routed experts)"
        )
        raise NodepruneError(
            f"this model has no {', '.join(missing)} nodes: {why}; leave "
            f"{' and '.join(missing)} out of --granularities (or use all)"
        )
    return [g for g in GRANULARITIES if g in wanted and GRANULARITIES[g].available(dims)]


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
