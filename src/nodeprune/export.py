"""Export a circuit for other tools.

* ``eap-ig``: the graph JSON of EAP-IG and the MIB circuit-localization track
  (``{"cfg", "nodes", "edges"}``; nodes ``input``, ``a{L}.h{H}``, ``m{L}``, ``logits``;
  edges ``parent->child``, with ``<q>``/``<k>``/``<v>`` on edges into heads). Kept
  nodes are in the graph and so is every edge between two kept nodes.
* ``tl-hooks``: the TransformerLens hook names of the kept nodes, with the head and
  neuron indices that are kept at each hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .architectures.base import ArchitectureAdapter
from .circuit import Circuit
from .errors import NodepruneError
from .suggest import closest

#: Families whose attention and MLP read the same residual stream (parallel blocks).
PARALLEL_FAMILIES = ("pythia", "neox", "gpt-j", "gptj", "falcon", "phi-1", "phi-2")
# The TransformerLens hook names are the same for every family nodeprune supports.
_HOOKS = ArchitectureAdapter()


def guess_parallel_attn_mlp(model_name: str) -> bool:
    name = model_name.lower()
    return any(f in name for f in PARALLEL_FAMILIES)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def node_scores(circuit: Circuit) -> dict[str, float]:
    """A score in [0, 1] per head and MLP node: the sigmoid of its final log-alpha capped
    by its ancestors' (a node is only as open as its most closed ancestor). Non-negative,
    so tools that rank by absolute score (MIB does) keep the order. Nodes without a
    stored log-alpha score 1 when kept and 0 when pruned."""
    dims, masks = circuit.dims, circuit.masks
    stored = {g: np.asarray(v, dtype=float) for g, v in circuit.extra.get("scores", {}).items()}
    big = np.full(dims.n_layers, math.inf)
    layer = stored.get("layer", big)
    attn = np.minimum(stored.get("attention_block", big), layer)
    mlp = np.minimum(stored.get("mlp_block", big), layer)
    heads = np.minimum(
        stored.get("attention_head", np.full((dims.n_layers, dims.n_heads), math.inf)),
        attn[:, None],
    )
    out: dict[str, float] = {}
    for i in range(dims.n_layers):
        for h in range(dims.n_heads):
            kept = bool(masks["attention_head"][i, h])
            s = heads[i, h]
            out[f"a{i}.h{h}"] = float(_sigmoid(s)) if math.isfinite(s) else float(kept)
        s = mlp[i]
        out[f"m{i}"] = (
            float(_sigmoid(s)) if math.isfinite(s) else float(bool(masks["mlp_block"][i]))
        )
    out["input"] = float(bool(masks["embedding"][0]))
    out["logits"] = 1.0
    return out


def eap_graph(
    circuit: Circuit, parallel_attn_mlp: bool | None = None, neurons: bool = False
) -> dict[str, Any]:
    """The EAP-IG / MIB graph JSON. Edge scores are min(parent score, child score) of
    :func:`node_scores`. With ``neurons``, every node also gets EAP-IG's per-``d_model``
    neuron mask: an MLP node's kept output dimensions (``mlp_output``); all true for
    the other nodes, whose outputs nodeprune does not gate per residual dimension."""
    dims, masks = circuit.dims, circuit.masks
    parallel = (
        guess_parallel_attn_mlp(circuit.model) if parallel_attn_mlp is None else parallel_attn_mlp
    )
    scores = node_scores(circuit)
    in_graph = {"input": bool(masks["embedding"][0]), "logits": True}
    for i in range(dims.n_layers):
        for h in range(dims.n_heads):
            in_graph[f"a{i}.h{h}"] = bool(masks["attention_head"][i, h])
        in_graph[f"m{i}"] = bool(masks["mlp_block"][i])

    order = ["input"]
    edges: dict[str, dict[str, Any]] = {}

    def add(parent: str, child: str, suffixes: tuple[str, ...] = ("",)) -> None:
        score = min(scores[parent], scores[child])
        kept = in_graph[parent] and in_graph[child]
        for suffix in suffixes:
            edges[f"{parent}->{child}{suffix}"] = {"score": score, "in_graph": kept}

    residual = ["input"]
    for i in range(dims.n_layers):
        heads = [f"a{i}.h{h}" for h in range(dims.n_heads)]
        for parent in residual:
            for head in heads:
                add(parent, head, ("<q>", "<k>", "<v>"))
        if parallel:
            for parent in residual:
                add(parent, f"m{i}")
            residual = residual + heads
        else:
            residual = residual + heads
            for parent in residual:
                add(parent, f"m{i}")
        residual.append(f"m{i}")
        order += heads + [f"m{i}"]
    for parent in residual:
        add(parent, "logits")
    order.append("logits")

    nodes: dict[str, dict[str, Any]] = {}
    for name in order:
        entry: dict[str, Any] = {"in_graph": in_graph[name]}
        if name != "logits":
            entry["score"] = scores[name]
        if neurons and name != "logits":
            if name.startswith("m"):
                entry["neurons"] = [bool(x) for x in masks["mlp_output"][int(name[1:])].tolist()]
            else:
                entry["neurons"] = [in_graph[name]] * dims.d_model
        nodes[name] = entry
    return {
        "cfg": {
            "n_layers": dims.n_layers,
            "n_heads": dims.n_heads,
            "parallel_attn_mlp": parallel,
            "d_model": dims.d_model,
        },
        "nodes": nodes,
        "edges": edges,
        "metadata": {
            "source": "nodeprune",
            "model": circuit.model,
            "task": circuit.task,
            "scores": "sigmoid of the final gate log-alpha, capped by ancestors; edge = "
            "min of its two nodes",
        },
    }


def _kept_indices(mask: Any) -> list[int]:
    return [int(i) for i in mask.nonzero().flatten().tolist()]


def tl_hooks(circuit: Circuit) -> dict[str, Any]:
    """The TransformerLens hooks of the kept nodes. Each entry names a node, its hook
    and the indices kept there: ``head`` and ``dims`` (kept ``d_head`` positions) on
    ``blocks.L.attn.hook_z`` (shape [batch, pos, head, d_head]); ``neurons`` on
    ``blocks.L.mlp.hook_post``; ``dims`` on ``blocks.L.hook_mlp_out`` when some MLP
    output dimensions are pruned."""
    dims, masks = circuit.dims, circuit.masks
    entries: list[dict[str, Any]] = []
    if bool(masks["embedding"][0]):
        entries.append({"node": "input", "hook": _HOOKS.hook_name("embed", 0)})
    for i in range(dims.n_layers):
        for h in range(dims.n_heads):
            if bool(masks["attention_head"][i, h]):
                entries.append(
                    {
                        "node": f"a{i}.h{h}",
                        "hook": _HOOKS.hook_name("attn_z", i),
                        "layer": i,
                        "head": h,
                        "dims": _kept_indices(masks["attention_neuron"][i, h]),
                    }
                )
        if bool(masks["mlp_block"][i]):
            entries.append(
                {
                    "node": f"m{i}",
                    "hook": _HOOKS.hook_name("mlp_hidden", i),
                    "layer": i,
                    "neurons": _kept_indices(masks["mlp_neuron"][i]),
                }
            )
            out_dims = _kept_indices(masks["mlp_output"][i])
            if len(out_dims) < dims.d_model:
                entries.append(
                    {
                        "node": f"m{i}",
                        "hook": _HOOKS.hook_name("mlp_out", i),
                        "layer": i,
                        "dims": out_dims,
                    }
                )
    return {
        "model": circuit.model,
        "task": circuit.task,
        "hook_names": sorted({e["hook"] for e in entries}, key=_hook_order),
        "nodes": entries,
    }


def _hook_order(name: str) -> tuple[int, str]:
    parts = name.split(".")
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1, name)


#: Registry of export formats: name -> function(circuit, **options) -> JSON-able dict.
EXPORT_FORMATS: dict[str, Callable[..., dict[str, Any]]] = {
    "eap-ig": eap_graph,
    "tl-hooks": tl_hooks,
}
EXPORT_OPTIONS: dict[str, tuple[str, ...]] = {
    "eap-ig": ("parallel_attn_mlp", "neurons"),
    "tl-hooks": (),
}


def export_circuit(circuit: Circuit, fmt: str, **options: Any) -> dict[str, Any]:
    if fmt not in EXPORT_FORMATS:
        raise NodepruneError(
            f"unknown export format {fmt!r}{closest(fmt, EXPORT_FORMATS)}; "
            f"choose from {', '.join(EXPORT_FORMATS)}"
        )
    # Options belong to one format each; a format ignores the others' options.
    wanted = EXPORT_OPTIONS[fmt]
    return EXPORT_FORMATS[fmt](circuit, **{k: v for k, v in options.items() if k in wanted})
