"""A reader of EAP-IG graph JSON that follows EAP-IG's own layout rules (``Graph.from_json``
of hannamw/EAP-IG, also at the MIB branch), written from its format, not its code:

* forward (source) index: ``input`` 0; head ``a{L}.h{H}`` at ``1 + L*(n_heads+1) + H``;
  ``m{L}`` at ``1 + L*(n_heads+1) + n_heads``; ``logits`` has none and is skipped;
* a node's ``neurons`` is assigned to ``neurons_in_graph[forward_index(node)]`` with the
  *default* slicing, which for a head is its whole layer's slice of heads: the entry must
  be the layer's ``[n_heads][d_model]`` block (a flat ``[d_model]`` list broadcasts to
  every head of the layer), and the last head of a layer read wins;
* once any node has ``neurons``, every node without an entry has none (all false);
* a node with no neuron in the graph is ablated: ``evaluate_graph`` patches every output
  dimension whose neuron is false (``prune()`` may leave its ``in_graph`` flag on, as it
  re-derives nodes from edges). ``kept`` below is that effective state.

Checked once against EAP-IG's own ``Graph.from_json`` (MIB branch, 7af394a) on a GPT-2
small export: the same node flags and neuron rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def forward_index(n_heads: int, name: str, attn_slice: bool) -> int | slice:
    if name == "input":
        return 0
    if name.startswith("m"):
        return 1 + int(name[1:]) * (n_heads + 1) + n_heads
    layer, head = name.split(".")
    first = 1 + int(layer[1:]) * (n_heads + 1)
    return slice(first, first + n_heads) if attn_slice else first + int(head[1:])


@dataclass
class EapGraph:
    cfg: dict[str, Any]
    nodes_in_graph: np.ndarray  # [n_forward]
    node_scores: np.ndarray | None  # [n_forward]
    neurons_in_graph: np.ndarray | None  # [n_forward, d_model]
    edges_in_graph: dict[str, bool]
    edge_scores: dict[str, float]

    def kept(self, name: str) -> bool:
        return bool(self.nodes_in_graph[forward_index(self.cfg["n_heads"], name, False)])

    def neurons(self, name: str) -> np.ndarray | None:
        if self.neurons_in_graph is None:
            return None
        return self.neurons_in_graph[forward_index(self.cfg["n_heads"], name, False)]


def read_eap_graph(doc: dict[str, Any]) -> EapGraph:
    cfg = doc["cfg"]
    n_layers, n_heads, d_model = cfg["n_layers"], cfg["n_heads"], cfg["d_model"]
    n_forward = 1 + n_layers * (n_heads + 1)
    nodes = np.zeros(n_forward, dtype=bool)
    scores = np.full(n_forward, np.nan)
    neurons = np.zeros((n_forward, d_model))
    any_score = any_neurons = False
    for name, entry in doc["nodes"].items():
        if name == "logits":
            continue
        nodes[forward_index(n_heads, name, False)] = entry["in_graph"]
        if "score" in entry:
            any_score = True
            scores[forward_index(n_heads, name, False)] = entry["score"]
        if "neurons" in entry:
            any_neurons = True
            neurons[forward_index(n_heads, name, True)] = np.asarray(entry["neurons"], float)
    kept_neurons = neurons.astype(bool) if any_neurons else None
    if kept_neurons is not None:  # a node without neurons is ablated
        nodes &= kept_neurons.any(axis=1)
    return EapGraph(
        cfg=cfg,
        nodes_in_graph=nodes,
        node_scores=scores if any_score else None,
        neurons_in_graph=kept_neurons,
        edges_in_graph={k: bool(v["in_graph"]) for k, v in doc["edges"].items()},
        edge_scores={k: float(v["score"]) for k, v in doc["edges"].items()},
    )
