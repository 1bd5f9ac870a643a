"""The edge circuit as a graph: layers bottom to top, the embedding below them and the
logits above, each layer's heads in a row with its MLP block at the right end. A node's
area grows with the share of its neurons the circuit keeps (a head's output dimensions,
an MLP's hidden neurons); a kept edge is a line whose width and opacity grow with its
gate (the sigmoid of its final log-alpha), coloured by the input it enters (a head's
query, key or value, an MLP's input, the logits)."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D

from ..edges.circuit import EdgeCircuit
from ..edges.export import eap_edge_gates
from .plotting import Plot, new_figure, png_bytes

#: Most edges drawn: past this the most open ones (by final log-alpha) are drawn, and the
#: title says how many of the kept edges that is; more lines are no longer readable.
MAX_DRAWN_EDGES = 400
#: Line colour per input kind (EAP-IG's suffixes; "" an MLP's input, "logits").
INPUT_COLOURS = {"q": "#3b7dd8", "k": "#e8912d", "v": "#3aa655", "mlp": "#8e5bd0",
                 "logits": "#555555"}  # fmt: skip


def _position(name: str, n_layers: int, n_heads: int) -> tuple[float, float]:
    """(x, y) of an EAP-IG node name: heads at y = layer, the MLP half a layer above at
    the row's right end; the embedding below layer 0, the logits above the last."""
    if name == "input":
        return (n_heads - 1) / 2, -1.0
    if name == "logits":
        return (n_heads - 1) / 2, float(n_layers)
    if name.startswith("m"):
        return n_heads + 0.5, int(name[1:]) + 0.5
    layer, head = name[1:].split(".h")
    return float(head), float(layer)


def _kept_share(edges: EdgeCircuit) -> dict[str, float]:
    """Per node: the share of its neurons kept (1 where its neurons are not gated)."""
    node = edges.node
    dims = node.dims
    masks = node.effective_masks()
    share: dict[str, float] = {"input": 1.0, "logits": 1.0}
    neurons = masks.get("attention_neuron")
    hidden = masks.get("mlp_neuron")
    for layer in range(dims.n_layers):
        for head in range(dims.n_heads):
            value = 1.0
            if neurons is not None:
                value = float(neurons.reshape(dims.n_layers, dims.n_heads, -1)[layer, head]
                              .float().mean())  # fmt: skip
            share[f"a{layer}.h{head}"] = value
        value = 1.0
        if hidden is not None:
            value = float(hidden.reshape(dims.n_layers, -1)[layer].float().mean())
        share[f"m{layer}"] = value
    return share


def edge_graph(edges: EdgeCircuit) -> Plot | None:
    """The edge circuit's graph, or None when it keeps no edge."""
    dims = edges.node.dims
    n_layers, n_heads = dims.n_layers, dims.n_heads
    gates = eap_edge_gates(edges)
    kept = {name: la for name, (keep, la) in gates.items() if keep}
    if not kept:
        return None
    share = _kept_share(edges)
    width = min(16.0, max(7.0, 2.5 + 0.55 * (n_heads + 2)))
    height = min(30.0, max(5.0, 1.5 + 0.42 * (n_layers + 2)))
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    segments, colours, widths = [], [], []
    nodes: set[str] = {"logits"}
    for name in kept:
        parent, child = name.split("->")
        nodes.update((parent, child.partition("<")[0]))
    drawn = sorted(kept.items(), key=lambda item: item[1])[-MAX_DRAWN_EDGES:]
    for name, log_alpha in drawn:  # the most open last, on top
        parent, child = name.split("->")
        target, _, suffix = child.partition("<")
        kind = suffix.rstrip(">") or ("logits" if target == "logits" else "mlp")
        gate = 1.0 / (1.0 + math.exp(-log_alpha))
        ends = (_position(parent, n_layers, n_heads), _position(target, n_layers, n_heads))
        segments.append(list(ends))
        rgb = [int(INPUT_COLOURS[kind][i : i + 2], 16) / 255 for i in (1, 3, 5)]
        colours.append(np.array([*rgb, 0.15 + 0.6 * gate]))
        widths.append(0.3 + 1.5 * gate)
    ax.add_collection(LineCollection(segments, colors=colours, linewidths=widths, zorder=1))
    for name in sorted(nodes):
        x, y = _position(name, n_layers, n_heads)
        size = 30 + 170 * share.get(name, 1.0)
        shape = "s" if name.startswith("m") else ("D" if name in ("input", "logits") else "o")
        ax.scatter([x], [y], s=size, marker=shape, c="white", edgecolors="black",
                   linewidths=1.0, zorder=2)  # fmt: skip
    for name, label in (("input", "embedding"), ("logits", "logits")):
        x, y = _position(name, n_layers, n_heads)
        ax.annotate(label, (x, y), xytext=(10, 0), textcoords="offset points", va="center",
                    fontsize=8)  # fmt: skip
    ax.set_xlim(-1, n_heads + 1.5)
    ax.set_ylim(-1.8, n_layers + 0.8)
    step = 1 if n_layers <= 32 else 2
    ax.set_yticks(range(0, n_layers, step))
    ax.set_yticklabels([str(t) for t in range(0, n_layers, step)], fontsize=8)
    ax.set_xticks([*range(n_heads), n_heads + 0.5])
    ax.set_xticklabels([*(str(h) for h in range(n_heads)), "MLP"], fontsize=8)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.grid(axis="y", color="#eeeeee", zorder=0)
    handles = [Line2D([0], [0], color=c, lw=2, label=label) for label, c in (
        ("into a query", INPUT_COLOURS["q"]), ("into a key", INPUT_COLOURS["k"]),
        ("into a value", INPUT_COLOURS["v"]), ("into an MLP", INPUT_COLOURS["mlp"]),
        ("into the logits", INPUT_COLOURS["logits"]))]  # fmt: skip
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              frameon=False)  # fmt: skip
    shown = "" if len(drawn) == len(kept) else f" (the {len(drawn)} most open drawn)"
    ax.set_title(
        f"Edge circuit: {edges.n_kept} of {edges.kept.numel()} candidate edges kept{shown}, "
        f"{len(nodes) - 1} nodes",
        fontsize=11,
    )
    caption = (
        "Layers bottom to top (embedding below, logits above); circles are heads, squares "
        "MLP blocks, their area the share of their neurons kept. Each kept edge is a line, "
        "wider and darker for a more open gate, coloured by the input it enters; under "
        "grouped-query attention a key or value edge is drawn to every query head of its "
        f"group. At most {MAX_DRAWN_EDGES} edges are drawn, the most open ones."
    )
    return Plot("edge_graph", "Edge circuit", caption, png_bytes(fig))
