"""An edge circuit as an EAP-IG graph: the node circuit's graph (export_eap.py) with each
edge's ``in_graph`` and ``score`` taken from the edge gates.

An EAP-IG edge between two kept nodes is in the graph when its edge gate is kept; its
score is the sigmoid of the gate's final log-alpha. Under grouped-query attention a key
or value input belongs to a key/value head: the edges into ``a{L}.h{H}<k>`` of every
query head of the group share that head's gate. Edges from or into pruned nodes are out,
with score 0. A node is in the graph when it is kept and one of its kept edges touches it
(the logits always).
"""

from __future__ import annotations

import math
from typing import Any

from ..export_eap import eap_edges, eap_graph
from .circuit import EdgeCircuit
from .graph import EdgeGraph


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _child_key(child: str, suffix: str, group_size: int) -> str:
    """EdgeGraph's name of an EAP-IG edge's downstream input."""
    if suffix in ("<k>", "<v>"):
        layer, head = child[1:].split(".h")
        return f"a{layer}.g{int(head) // group_size}{suffix}"
    return child + suffix


def eap_edge_index(graph: EdgeGraph) -> dict[str, int]:
    """EAP-IG edge name (``parent->child<q>``) -> the index of its edge in ``graph``'s
    flat order, for each EAP-IG edge that is a candidate edge of ``graph`` (EAP-IG's
    parallel graph for parallel blocks), in EAP-IG's edge order."""
    dims = graph.dims
    index = {edge: i for i, edge in enumerate(graph.edge_names())}
    group_size = dims.n_heads // dims.n_kv_heads
    out = {}
    for parent, child, suffix in eap_edges(dims.n_layers, dims.n_heads, graph.parallel):
        i = index.get((parent, _child_key(child, suffix, group_size)))
        if i is not None:
            out[f"{parent}->{child}{suffix}"] = i
    return out


def eap_edge_gates(edges: EdgeCircuit) -> dict[str, tuple[bool, float]]:
    """EAP-IG edge name -> (kept, final log-alpha) of its edge gate, for each EAP-IG edge
    that is a candidate edge (:func:`eap_edge_index`)."""
    kept, log_alpha = edges.kept.tolist(), edges.log_alpha.tolist()
    return {
        name: (bool(kept[i]), float(log_alpha[i]))
        for name, i in eap_edge_index(edges.graph()).items()
    }


def touched_nodes(edge_names: list[str]) -> set[str]:
    """The nodes at either end of these EAP-IG edges, and the logits."""
    touched = {"logits"}
    for name in edge_names:
        parent, child = name.split("->")
        touched.update((parent, child.split("<")[0]))
    return touched


def edge_eap_graph(edges: EdgeCircuit) -> dict[str, Any]:
    """The EAP-IG graph JSON of an edge circuit (parallel blocks as the edge circuit says)."""
    node = edges.node
    graph = eap_graph(node, parallel_attn_mlp=edges.parallel)
    gates = eap_edge_gates(edges)
    for name in graph["edges"]:
        gate = gates.get(name)
        kept, score = (False, 0.0) if gate is None else (gate[0], _sigmoid(gate[1]))
        graph["edges"][name] = {"score": score, "in_graph": kept}
    touched = touched_nodes([n for n, (kept, _) in gates.items() if kept])
    for name, entry in graph["nodes"].items():
        entry["in_graph"] = bool(entry["in_graph"]) and name in touched
    graph["metadata"]["scores"] = (
        "edges: sigmoid of the edge gate's final log-alpha (edge phase); 0 for edges "
        "from or into nodes the node circuit pruned; nodes: as in the node circuit"
    )
    graph["metadata"]["edge_metrics"] = edges.metrics
    return graph
