"""The candidate edges of the edge phase: between the nodes a node circuit kept.

Upstream nodes write to the residual stream: the embedding (``input``), each kept head
(``a{L}.h{H}``) and each kept MLP block (``m{L}``). Downstream inputs read it: each kept
head's query input and its key and value inputs (one per key/value head under grouped-
query attention, which computes one key and value for the group), each kept MLP block's
input and the logits. An edge connects an upstream node to a downstream input that comes
after it (a head reads the layers below; an MLP also reads its own layer's heads, except
in a parallel block, where attention and MLP both read the layer's input: EAP-IG's
``parallel_attn_mlp`` graph; the logits read everything). Edges from or into a pruned
node are not candidates: a pruned node already writes its ablated output everywhere and
reads nothing that matters.

The edges into one downstream *group* (a layer's attention inputs, a layer's MLP, the
logits) always come from a prefix of the upstream list, so each group's gates are one
matrix ``[rows, prefix]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..architectures.base import ModelDims

#: The names of the three inputs of a head, in EAP-IG's edge suffixes.
HEAD_INPUTS = ("q", "k", "v")


@dataclass(frozen=True)
class Upstream:
    """A node that writes to the residual stream. ``layer`` is -1 for the embedding;
    ``head`` is the head's index (None for the embedding and MLP blocks)."""

    kind: str  # "embed" | "head" | "mlp"
    layer: int
    head: int | None = None

    @property
    def name(self) -> str:
        if self.kind == "embed":
            return "input"
        if self.kind == "head":
            return f"a{self.layer}.h{self.head}"
        return f"m{self.layer}"


@dataclass(frozen=True)
class Row:
    """One downstream input: a head's q (``index`` = query head), k or v (``index`` =
    key/value head), an MLP block's input or the logits (``index`` 0, ``part`` "")."""

    part: str  # "q" | "k" | "v" | ""
    index: int


@dataclass(frozen=True)
class Group:
    """The downstream inputs of one place in the model and the upstream prefix they read."""

    kind: str  # "attn" | "mlp" | "logits"
    layer: int  # n_layers for the logits
    rows: tuple[Row, ...]
    n_upstream: int

    @property
    def name(self) -> str:
        return "logits" if self.kind == "logits" else f"{self.kind}{self.layer}"

    @property
    def size(self) -> int:
        return len(self.rows) * self.n_upstream


class EdgeGraph:
    """The candidate edges between the nodes kept by a node circuit's effective masks
    (``embedding`` [1], ``attention_head`` [L, H], ``mlp_block`` [L]); ``parallel``:
    each layer's MLP reads the layer's input, not its heads."""

    def __init__(self, dims: ModelDims, kept: dict[str, Tensor], parallel: bool = False) -> None:
        self.dims = dims
        self.parallel = parallel
        heads = kept["attention_head"].bool().reshape(dims.n_layers, dims.n_heads)
        mlps = kept["mlp_block"].bool().reshape(dims.n_layers)
        group_size = dims.n_heads // dims.n_kv_heads
        self.upstream: list[Upstream] = []
        if bool(kept["embedding"].reshape(-1)[0]):
            self.upstream.append(Upstream("embed", -1))
        self.groups: list[Group] = []
        for layer in range(dims.n_layers):
            kept_heads = [h for h in range(dims.n_heads) if heads[layer, h]]
            kv_heads = sorted({h // group_size for h in kept_heads})
            rows = [Row("q", h) for h in kept_heads]
            rows += [Row(part, g) for g in kv_heads for part in ("k", "v")]
            if rows and self.upstream:
                self.groups.append(Group("attn", layer, tuple(rows), len(self.upstream)))
            below = len(self.upstream)  # what a parallel block's MLP reads
            self.upstream += [Upstream("head", layer, h) for h in kept_heads]
            if mlps[layer]:
                reads = below if parallel else len(self.upstream)
                if reads:
                    self.groups.append(Group("mlp", layer, (Row("", 0),), reads))
                self.upstream.append(Upstream("mlp", layer))
        if self.upstream:
            self.groups.append(Group("logits", dims.n_layers, (Row("", 0),), len(self.upstream)))
        self.slices: dict[str, slice] = {}
        offset = 0
        for group in self.groups:
            self.slices[group.name] = slice(offset, offset + group.size)
            offset += group.size
        self.n_edges = offset

    @classmethod
    def full(cls, dims: ModelDims, parallel: bool = False) -> EdgeGraph:
        """Every node of the model a candidate (the full-model edge formulation)."""
        return cls(
            dims,
            {
                "embedding": torch.ones(1, dtype=torch.bool),
                "attention_head": torch.ones(dims.n_layers, dims.n_heads, dtype=torch.bool),
                "mlp_block": torch.ones(dims.n_layers, dtype=torch.bool),
            },
            parallel=parallel,
        )

    def group(self, kind: str, layer: int) -> Group | None:
        for g in self.groups:
            if g.kind == kind and g.layer == layer:
                return g
        return None

    def split(self, flat: Tensor) -> dict[str, Tensor]:
        """A flat per-edge tensor as one ``[rows, prefix]`` matrix per group."""
        return {
            g.name: flat[self.slices[g.name]].view(len(g.rows), g.n_upstream) for g in self.groups
        }

    def edge_names(self) -> list[tuple[str, str]]:
        """(upstream, downstream) per edge in the flat order; downstream names are
        EAP-IG's (``a{L}.h{H}<q>``, ``m{L}``, ``logits``), a key/value head's inputs
        named after its first query head's with the key/value head's index as ``g``."""
        out = []
        for g in self.groups:
            for row in g.rows:
                child = self.row_name(g, row)
                out += [(u.name, child) for u in self.upstream[: g.n_upstream]]
        return out

    def row_name(self, group: Group, row: Row) -> str:
        if group.kind == "logits":
            return "logits"
        if group.kind == "mlp":
            return f"m{group.layer}"
        if row.part == "q":
            return f"a{group.layer}.h{row.index}<q>"
        return f"a{group.layer}.g{row.index}<{row.part}>"
