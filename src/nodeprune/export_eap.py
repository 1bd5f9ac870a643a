"""The EAP-IG graph JSON of a circuit (``{"cfg", "nodes", "edges"}``; nodes ``input``,
``a{L}.h{H}``, ``m{L}``, ``logits``; edges ``parent->child``, with ``<q>``/``<k>``/``<v>``
on edges into heads), and the node helpers the MIB export shares. Kept nodes are in the
graph and so is every edge between two kept nodes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .circuit import Circuit

#: Families whose attention and MLP read the same residual stream (parallel blocks).
PARALLEL_FAMILIES = ("pythia", "neox", "gpt-j", "gptj", "falcon", "phi-1", "phi-2")
#: The key in ``Circuit.extra`` that records whether the prompts began with a BOS token.
BOS_KEY = "prompts_start_with_bos"
BOS_NOTE = (
    "EAP-IG and the MIB circuit track prepend a BOS token to every prompt; nodeprune "
    "feeds the prompts as its tokenizer encodes them (a BOS token only where the "
    "tokenizer adds one). prompts_start_with_bos says which the circuit was found with "
    "(null: the circuit file predates that record)."
)


def guess_parallel_attn_mlp(model_name: str) -> bool:
    name = model_name.lower()
    return any(f in name for f in PARALLEL_FAMILIES)


def prompts_start_with_bos(first_tokens: Any, tokenizer: object) -> bool:
    """Whether every prompt's first token is the tokenizer's BOS token (``first_tokens``:
    the first token id of each prompt)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    values = [int(t) for t in first_tokens]
    return bool(values) and all(t == int(bos) for t in values)


def bos_fields(circuit: Circuit) -> dict[str, Any]:
    """What the written files say about BOS tokens."""
    value = circuit.extra.get(BOS_KEY)
    return {
        BOS_KEY: value if isinstance(value, bool) else None,
        "eap_ig_prepends_bos": True,
        "bos_note": BOS_NOTE,
    }


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def eap_node_names(n_layers: int, n_heads: int) -> list[str]:
    """EAP-IG's nodes in its order: input, then per layer its heads and its MLP, logits."""
    names = ["input"]
    for i in range(n_layers):
        names += [f"a{i}.h{h}" for h in range(n_heads)] + [f"m{i}"]
    return names + ["logits"]


def eap_edges(n_layers: int, n_heads: int, parallel: bool) -> list[tuple[str, str, str]]:
    """EAP-IG's edges in its order, as (parent, child, suffix); the suffix is ``<q>``,
    ``<k>`` or ``<v>`` into heads and empty otherwise."""
    edges: list[tuple[str, str, str]] = []
    residual = ["input"]
    for i in range(n_layers):
        heads = [f"a{i}.h{h}" for h in range(n_heads)]
        for parent in residual:
            for head in heads:
                edges += [(parent, head, f"<{x}>") for x in "qkv"]
        if parallel:
            edges += [(parent, f"m{i}", "") for parent in residual]
            residual = residual + heads
        else:
            residual = residual + heads
            edges += [(parent, f"m{i}", "") for parent in residual]
        residual.append(f"m{i}")
    edges += [(parent, "logits", "") for parent in residual]
    return edges


def node_kept(circuit: Circuit) -> dict[str, bool]:
    """Each EAP-IG node's membership under the effective masks (``logits`` always in)."""
    dims, masks = circuit.dims, circuit.effective_masks()
    kept = {"input": bool(masks["embedding"][0]), "logits": True}
    for i in range(dims.n_layers):
        for h in range(dims.n_heads):
            kept[f"a{i}.h{h}"] = bool(masks["attention_head"][i, h])
        kept[f"m{i}"] = bool(masks["mlp_block"][i])
    return kept


def node_scores(circuit: Circuit, log_alphas: dict[str, Any] | None = None) -> dict[str, float]:
    """A score in [0, 1] per head and MLP node: the sigmoid of its final log-alpha capped
    by its ancestors' (a node is only as open as its most closed ancestor). Non-negative,
    so tools that rank by absolute score (MIB does) keep the order. Nodes without a
    stored log-alpha score 1 when kept and 0 when pruned, and so does a node that the
    effective masks prune although its own gates are open (all its neurons pruned):
    it scores as its kept state says. ``log_alphas`` (final log-alpha per granularity)
    replaces the scores stored in the circuit."""
    dims = circuit.dims
    source = log_alphas if log_alphas is not None else circuit.extra.get("scores", {})
    stored = {g: np.asarray(v, dtype=float) for g, v in source.items()}
    big = np.full(dims.n_layers, math.inf)
    layer = stored.get("layer", big)
    attn = np.minimum(stored.get("attention_block", big), layer)
    mlp = np.minimum(stored.get("mlp_block", big), layer)
    heads = np.minimum(
        stored.get("attention_head", np.full((dims.n_layers, dims.n_heads), math.inf)),
        attn[:, None],
    )
    kept = node_kept(circuit)

    def score(name: str, la: float) -> float:
        if not math.isfinite(la):
            return float(kept[name])
        value = float(_sigmoid(la))
        # An open gate on a node pruned through its children must not rank it with the
        # kept nodes (nor a closed one on a kept node, in a hand-made circuit).
        return value if (value > 0.5) == kept[name] else float(kept[name])

    out: dict[str, float] = {}
    for i in range(dims.n_layers):
        for h in range(dims.n_heads):
            out[f"a{i}.h{h}"] = score(f"a{i}.h{h}", heads[i, h])
        out[f"m{i}"] = score(f"m{i}", mlp[i])
    out["input"] = float(kept["input"])
    out["logits"] = 1.0
    return out


def eap_config(circuit: Circuit, parallel: bool) -> dict[str, Any]:
    dims = circuit.dims
    return {
        "n_layers": dims.n_layers,
        "n_heads": dims.n_heads,
        "parallel_attn_mlp": parallel,
        "d_model": dims.d_model,
    }


def resolve_parallel(circuit: Circuit, parallel_attn_mlp: bool | None) -> bool:
    if parallel_attn_mlp is None:
        return guess_parallel_attn_mlp(circuit.model)
    return parallel_attn_mlp


def node_neurons(circuit: Circuit) -> dict[str, list[Any]]:
    """EAP-IG's ``neurons`` entry of each node but ``logits``, in the layout its
    ``Graph.from_json`` reads: an MLP's or the input's ``[d_model]`` list, and for a
    head its whole layer's ``[n_heads][d_model]`` block (EAP-IG stores a layer's heads
    as one slice and assigns each head node's entry to that slice, so every head of a
    layer carries the same block, row h for head h). An MLP's kept entries are its kept
    output dimensions (``mlp_output``); a head's and the input's are all true when kept:
    nodeprune gates a head inside its ``d_head`` space, which is not a set of residual
    dimensions, so a partly pruned head exports as whole. Every node gets an entry:
    EAP-IG gives a node without one no neurons, which ablates all of its output."""
    dims = circuit.dims
    masks = circuit.effective_masks()
    kept = node_kept(circuit)
    out: dict[str, list[Any]] = {"input": [kept["input"]] * dims.d_model}
    for i in range(dims.n_layers):
        block = [[kept[f"a{i}.h{h}"]] * dims.d_model for h in range(dims.n_heads)]
        for h in range(dims.n_heads):
            out[f"a{i}.h{h}"] = block
        out[f"m{i}"] = [bool(x) for x in masks["mlp_output"][i].tolist()]
    return out


def eap_graph(
    circuit: Circuit, parallel_attn_mlp: bool | None = None, neurons: bool = False
) -> dict[str, Any]:
    """The EAP-IG graph JSON. Edge scores are min(parent score, child score) of
    :func:`node_scores`. With ``neurons``, every node also gets EAP-IG's per-``d_model``
    neuron mask (:func:`node_neurons`)."""
    dims = circuit.dims
    parallel = resolve_parallel(circuit, parallel_attn_mlp)
    scores = node_scores(circuit)
    kept = node_kept(circuit)
    edges = {
        f"{p}->{c}{s}": {"score": min(scores[p], scores[c]), "in_graph": kept[p] and kept[c]}
        for p, c, s in eap_edges(dims.n_layers, dims.n_heads, parallel)
    }
    per_node = node_neurons(circuit) if neurons else {}
    nodes: dict[str, dict[str, Any]] = {}
    for name in eap_node_names(dims.n_layers, dims.n_heads):
        entry: dict[str, Any] = {"in_graph": kept[name]}
        if name != "logits":
            entry["score"] = scores[name]
        if name in per_node:
            entry["neurons"] = per_node[name]
        nodes[name] = entry
    return {
        "cfg": eap_config(circuit, parallel),
        "nodes": nodes,
        "edges": edges,
        "metadata": {
            "source": "nodeprune",
            "model": circuit.model,
            "task": circuit.task,
            "ablation": circuit.ablation,
            "scores": "sigmoid of the final gate log-alpha, capped by ancestors; edge = "
            "min of its two nodes",
            **bos_fields(circuit),
        },
    }
