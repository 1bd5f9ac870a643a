"""A submission for the MIB circuit-localization track.

MIB wants one folder per task and model, named ``<task>_<model>`` (``ioi_gpt2``), holding
either one importance-score file or nine binary circuits. nodeprune writes the importance
file, ``<task>_<model>/importances.json``: the name MIB's ``run_evaluation.py`` loads by
default, in EAP-IG's graph JSON (:func:`nodeprune.export.eap_graph`). MIB then builds the
circuit at each of its sizes (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50 and 100 % of the edges)
from the edges with the highest scores, so only the *order* of the edge scores counts.

**The order.** nodeprune gates nodes, not edges, so an edge's importance has to come from
its two ends, and node scores alone tie across thousands of edges (every edge into the
logits from one node, every edge between two saturated gates), which would leave the
edges at a size cutoff to the sort's whim. Edges are ranked by, in turn:

1. membership: edges between two nodes of the circuit (under the effective masks) come
   first, so MIB's circuit at the circuit's own size is nodeprune's circuit;
2. the node gates: the smaller of the two ends' node scores (the sigmoid of the final
   log-alpha capped by its ancestors', :func:`nodeprune.export.node_scores`);
3. the neuron gates feeding the edge: the parent's output mass times the child's input
   mass. A head's mass is the mean over its ``d_head`` output dimensions of the sigmoid
   of their final log-alpha (attention_neuron), which is what it writes to the residual
   stream and what its value input can reach; an MLP's input mass is the mean over its
   hidden neurons (mlp_neuron), which read its input, and its output mass that times the
   mean over its output dimensions (mlp_output); the input and the logits count 1. The
   final log-alphas come from the run folder's checkpoint (written after the last step);
   without one, each neuron counts 1 when kept and 0 when pruned (the kept fraction).
   Granularities that were not gated count 1 per kept neuron;
4. the edge attribution (``nodeprune.edges.attribution``; the command computes it unless
   ``--no-attribution``): each edge's first-order effect on the task metric, the
   gradient of the mean metric with respect to its edge gate at every node of the model
   a candidate and every edge open (edge attribution patching: the parent's clean minus
   ablated output times the gradient at the child's input, a head's query, key and value
   inputs apart), on the first ``--attribution-prompts`` train prompts of the run, ranked
   by its absolute value. It tells apart the query, key and value edges of one parent
   and head, on which nodeprune's node gates act alike;
5. EAP-IG's own edge order (parents nearer the input first; ``<q>``, ``<k>``, ``<v>``).
   It decides only between edges equal on 1-4: with the attribution, edges with no
   effect at all (the embedding's edges into what reads only the answer position, where
   clean and corrupted tokens agree) and, under grouped-query attention, the EAP-IG
   edges into one key/value head's query heads, which are one edge of the model.

**With an edge circuit** (``nodeprune edges RUN`` wrote ``RUN/edges/edge_circuit.json``
for this node circuit), the learned edge gates come first: (0) the edge circuit's kept
edges, so MIB's circuit at the edge circuit's size is the edge circuit; then (1)
membership; then the edge gates themselves, the sigmoid of each candidate edge's final
log-alpha (edges between kept nodes; the others count 0), which tell apart the query,
key and value inputs of a head; then rules 2-5.

The scores written are the ranks, ``(N - r) / N`` for the edge at rank r of N: distinct
(also as float32, which EAP-IG loads them into), positive, so MIB's top-n is exactly this
order whether or not it ranks by absolute value. ``metadata.cutoffs`` says, for each of
MIB's sizes, which rule above separates the last edge in from the first edge out. Node
scores are ranked the same way (rules 1-3 and 5 on the node itself), for MIB's node level.

**BOS.** EAP-IG (and so MIB) prepends a BOS token to every prompt; nodeprune uses the
prompts as the tokenizer encodes them. ``metadata.prompts_start_with_bos`` says which
the circuit was found with.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .circuit import Circuit, make_consistent
from .edges.circuit import EdgeCircuit, refines
from .errors import NodepruneError
from .export_eap import (
    bos_fields,
    eap_config,
    eap_edges,
    eap_node_names,
    node_kept,
    node_scores,
    resolve_parallel,
)
from .granularity import GRANULARITIES, where

if TYPE_CHECKING:
    from .edges.attribution import EdgeAttribution

#: MIB's task names (folder spelling: hyphens).
MIB_TASKS = (
    "ioi",
    "mcqa",
    "arithmetic-addition",
    "arithmetic-subtraction",
    "arc-easy",
    "arc-challenge",
)
#: MIB's model names, with (n_layers, n_heads, d_model) where the model is public.
MIB_MODELS: dict[str, tuple[int, int, int] | None] = {
    "gpt2": (12, 12, 768),
    "qwen2.5": (24, 14, 896),
    "gemma2": (26, 8, 2304),
    "llama3": (32, 32, 4096),
    "interpbench": None,
}
#: Hugging Face names of MIB's models.
HF_TO_MIB = {
    "gpt2": "gpt2",
    "openai-community/gpt2": "gpt2",
    "qwen/qwen2.5-0.5b": "qwen2.5",
    "google/gemma-2-2b": "gemma2",
    "meta-llama/llama-3.1-8b": "llama3",
}
#: The sizes MIB scores an importance file at, as fractions of the edges.
MIB_EDGE_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
#: The rules of the edge order, in the order they apply (see the module docstring);
#: with an edge attribution, ATTRIBUTION_RULE comes just before the last.
RULES = ("membership", "node gates", "neuron gates", "EAP-IG order")
#: The same with an edge circuit's gates in front.
EDGE_RULES = ("edge circuit", "membership", "edge gates", "node gates", "neuron gates",
              "EAP-IG order")  # fmt: skip
#: The rule edge attribution adds, just before EAP-IG's order.
ATTRIBUTION_RULE = "edge attribution"
IMPORTANCE_FILE = "importances.json"


def mib_task_name(circuit: Circuit, task: str | None = None) -> str:
    name = (task or circuit.task).strip().replace("_", "-")
    if task is None and name not in MIB_TASKS:
        raise NodepruneError(
            f"task {circuit.task!r} is not one of MIB's ({', '.join(MIB_TASKS)}); pass "
            "--mib-task NAME to name the folder anyway (MIB scores only its own tasks)"
        )
    if not name or "/" in name or "_" in name:
        raise NodepruneError(f"--mib-task {task!r} cannot name a folder; use e.g. ioi")
    return name


def mib_model_name(circuit: Circuit, model: str | None = None) -> str:
    name = model.strip() if model is not None else HF_TO_MIB.get(circuit.model.lower())
    if name is None:
        raise NodepruneError(
            f"model {circuit.model!r} is not one of MIB's models "
            f"({', '.join(MIB_MODELS)}); pass --mib-model NAME"
        )
    if not name or "/" in name or "_" in name:
        raise NodepruneError(f"--mib-model {model!r} cannot name a folder; use e.g. gpt2")
    expected = MIB_MODELS.get(name)
    dims = circuit.dims
    if expected is not None and expected != (dims.n_layers, dims.n_heads, dims.d_model):
        raise NodepruneError(
            f"MIB's {name} has {expected[0]} layers, {expected[1]} heads and d_model "
            f"{expected[2]}, but the circuit's model {circuit.model!r} has {dims.n_layers}, "
            f"{dims.n_heads} and {dims.d_model}; export a circuit found on that model"
        )
    return name


def final_log_alphas(circuit: Circuit, folder: str | Path) -> tuple[dict[str, Tensor] | None, str]:
    """The final log-alpha of every gated node, from the checkpoint in ``folder``, if it
    is the run that found ``circuit`` (its gates give exactly the circuit's masks); with
    why not otherwise."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    from .checkpoint import TENSORS_FILE

    path = Path(folder) / TENSORS_FILE
    if not path.is_file():
        return None, f"no {TENSORS_FILE} next to the circuit"
    try:
        flat = load(path.read_bytes()).get("gates.log_alpha")
    except (OSError, SafetensorError) as exc:
        return None, f"{path} is not readable ({exc})"
    sizes = {g: GRANULARITIES[g].size(circuit.dims) for g in circuit.enabled}
    if flat is None or flat.dim() != 1 or flat.numel() != sum(sizes.values()):
        return None, f"{path} holds no gates of this circuit's granularities"
    out: dict[str, Tensor] = {}
    offset = 0
    for g in GRANULARITIES:  # the gates' layout (GateSet): enabled ones in registry order
        if g in sizes:
            shape = GRANULARITIES[g].shape(circuit.dims)
            out[g] = flat[offset : offset + sizes[g]].float().reshape(shape)
            offset += sizes[g]
    opened = {g: la > 0 for g, la in out.items()}
    found = make_consistent({**circuit.masks, **opened}, circuit.enabled)
    own = circuit.effective_masks()
    if any(not torch.equal(found[g], own[g]) for g in circuit.enabled):
        return None, f"the gates in {path} do not give this circuit (another run's checkpoint?)"
    return out, f"final log-alphas from {path}"


def _neuron_values(circuit: Circuit, log_alphas: dict[str, Tensor] | None) -> dict[str, Tensor]:
    """Per neuron granularity: sigmoid of the final log-alpha where known, else the
    effective mask (1 kept, 0 pruned)."""
    masks = circuit.effective_masks()
    out = {}
    for g in ("embedding", "attention_neuron", "mlp_neuron", "mlp_output"):
        if log_alphas is not None and g in log_alphas:
            out[g] = torch.sigmoid(log_alphas[g].double())
        else:
            out[g] = masks[g].double()
    return out


def neuron_masses(
    circuit: Circuit, log_alphas: dict[str, Tensor] | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """(output mass, input mass) of every EAP-IG node (rule 3 of the module docstring)."""
    dims = circuit.dims
    v = _neuron_values(circuit, log_alphas)
    head = v["attention_neuron"].mean(-1)
    hidden = v["mlp_neuron"].mean(-1)
    written = v["mlp_output"].mean(-1)
    out_mass = {"input": float(v["embedding"][0])}
    in_mass = {"logits": 1.0}
    for i in range(dims.n_layers):
        for h in range(dims.n_heads):
            out_mass[f"a{i}.h{h}"] = in_mass[f"a{i}.h{h}"] = float(head[i, h])
        in_mass[f"m{i}"] = float(hidden[i])
        out_mass[f"m{i}"] = float(hidden[i] * written[i])
    return out_mass, in_mass


def _rank_scores(keys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Order by the keys (each: higher first), then by position; return (order, scores
    with scores[i] = (N - rank of i) / N)."""
    n = len(keys[0])
    position = np.arange(n)
    order = np.lexsort([position] + [-k for k in reversed(keys)])
    scores = np.empty(n)
    scores[order] = (n - np.arange(n)) / n
    if len(np.unique(scores.astype(np.float32))) != n:
        raise NodepruneError(f"{n} scores cannot all be told apart in float32 (over 2**24?)")
    return order, scores


def _cutoff_rules(
    keys: list[np.ndarray], order: np.ndarray, rules: tuple[str, ...]
) -> list[dict[str, Any]]:
    """For each MIB size: which rule separates the last edge in from the first edge out."""
    n = len(order)
    out = []
    for fraction in MIB_EDGE_FRACTIONS:
        k = int(fraction * n)
        if k <= 0 or k >= n:
            out.append({"fraction": fraction, "edges": k, "decided_by": None})
            continue
        last, first = order[k - 1], order[k]
        rule = next((rules[j] for j, key in enumerate(keys) if key[last] != key[first]), rules[-1])
        out.append({"fraction": fraction, "edges": k, "decided_by": rule})
    return out


def mib_graph(
    circuit: Circuit,
    parallel_attn_mlp: bool | None = None,
    log_alphas: dict[str, Tensor] | None = None,
    mib_task: str | None = None,
    mib_model: str | None = None,
    edges: EdgeCircuit | None = None,
    attribution: EdgeAttribution | None = None,
) -> tuple[str, dict[str, Any]]:
    """(folder name ``<task>_<model>``, the importance file's JSON); ``edges``: an edge
    circuit of ``circuit`` whose gates rank the edges first; ``attribution``: the edge
    attribution of the circuit's model, the last rule before EAP-IG's order."""
    folder = f"{mib_task_name(circuit, mib_task)}_{mib_model_name(circuit, mib_model)}"
    dims = circuit.dims
    parallel = resolve_parallel(circuit, parallel_attn_mlp)
    kept = node_kept(circuit)
    opened = node_scores(circuit, _coarse(log_alphas))
    out_mass, in_mass = neuron_masses(circuit, log_alphas)

    eap = eap_edges(dims.n_layers, dims.n_heads, parallel)
    edge_keys = [
        np.array([kept[p] and kept[c] for p, c, _ in eap], dtype=float),
        np.array([min(opened[p], opened[c]) for p, c, _ in eap]),
        np.array([out_mass[p] * in_mass[c] for p, c, _ in eap]),
    ]
    rules, in_graph, node_in = RULES, edge_keys[0], dict(kept)
    if edges is not None:
        rules = EDGE_RULES
        in_graph, edge_gate, node_in = _edge_keys(circuit, edges, eap, parallel, kept)
        edge_keys = [in_graph, edge_keys[0], edge_gate, *edge_keys[1:]]
    if attribution is not None:
        rules = (*rules[:-1], ATTRIBUTION_RULE, rules[-1])
        edge_keys.append(_attribution_key(attribution, eap, parallel))
    edge_order, edge_scores = _rank_scores(edge_keys)

    names = [n for n in eap_node_names(dims.n_layers, dims.n_heads) if n != "logits"]
    node_keys = [
        np.array([kept[n] for n in names], dtype=float),
        np.array([opened[n] for n in names]),
        np.array([out_mass[n] for n in names]),
    ]
    _, node_rank = _rank_scores(node_keys)
    nodes: dict[str, dict[str, Any]] = {
        n: {"in_graph": node_in[n], "score": float(s)}
        for n, s in zip(names, node_rank, strict=True)
    }
    nodes["logits"] = {"in_graph": True}
    n_in = int(in_graph.sum())
    doc = {
        "cfg": eap_config(circuit, parallel),
        "nodes": nodes,
        "edges": {
            f"{p}->{c}{s}": {"score": float(score), "in_graph": bool(member)}
            for (p, c, s), score, member in zip(eap, edge_scores, in_graph, strict=True)
        },
        "metadata": {
            "source": "nodeprune",
            "model": circuit.model,
            "task": circuit.task,
            "ablation": circuit.ablation,
            "mib_folder": folder,
            "scores": "rank scores (N - r) / N of an edge order: "
            + ("edge-circuit membership, then " if edges is not None else "")
            + "node-circuit membership, then "
            + ("the edge gate, then " if edges is not None else "")
            + "the smaller node score of its two ends, then parent output x child input "
            "neuron-gate mass, then "
            + ("the absolute edge attribution, then " if attribution is not None else "")
            + "EAP-IG's edge order (see nodeprune.export_mib)",
            "ranking_rules": list(rules),
            "edge_gates": "the edge phase's final log-alphas" if edges is not None else None,
            "edge_attribution": attribution.metadata() if attribution is not None else None,
            "neuron_gates": "final log-alphas (checkpoint)"
            if log_alphas is not None
            else "kept-neuron fractions (no checkpoint with the final log-alphas)",
            "circuit_edges": n_in,
            "circuit_edge_fraction": n_in / len(eap),
            "cutoffs": _cutoff_rules(edge_keys, edge_order, rules),
            **bos_fields(circuit),
        },
    }
    return folder, doc


def _edge_keys(
    circuit: Circuit,
    edges: EdgeCircuit,
    eap: list[tuple[str, str, str]],
    parallel: bool,
    kept: dict[str, bool],
) -> tuple[np.ndarray, np.ndarray, dict[str, bool]]:
    """(edge-circuit membership, edge-gate key, nodes in the graph) over the EAP-IG edges."""
    from .edges.export import eap_edge_gates, touched_nodes

    if parallel != edges.parallel:
        found, asked = ("parallel", "sequential") if edges.parallel else ("sequential", "parallel")
        raise NodepruneError(
            f"the edge circuit was found on {found} attention/MLP blocks and the export asks "
            f"for {asked} ones; pass --{'' if edges.parallel else 'no-'}parallel-attn-mlp"
        )
    if not refines(edges, circuit):
        raise NodepruneError(
            "the edge circuit refines another node circuit than this one; rerun "
            "`nodeprune edges RUN` for this circuit"
        )
    gates = eap_edge_gates(edges)
    names = [f"{p}->{c}{s}" for p, c, s in eap]
    member = np.array([n in gates and gates[n][0] for n in names], dtype=float)
    gate = np.array([1 / (1 + np.exp(-gates[n][1])) if n in gates else 0.0 for n in names])
    touched = touched_nodes([n for n in names if n in gates and gates[n][0]])
    return member, gate, {n: kept[n] and n in touched for n in kept}


def _attribution_key(
    attribution: EdgeAttribution, eap: list[tuple[str, str, str]], parallel: bool
) -> np.ndarray:
    """The absolute edge attribution of every EAP-IG edge."""
    if attribution.parallel != parallel:
        found = "parallel" if attribution.parallel else "sequential"
        raise NodepruneError(
            f"the model's attention/MLP blocks are {found} and the export asks for the other "
            f"graph; pass --{'' if attribution.parallel else 'no-'}parallel-attn-mlp"
        )
    names = [f"{p}->{c}{s}" for p, c, s in eap]
    missing = [n for n in names if n not in attribution.scores]
    if missing:
        raise NodepruneError(
            f"the edge attribution has no score for {len(missing)} edges (e.g. {missing[0]}); "
            "it was computed for another model"
        )
    return np.abs(np.array([attribution.scores[n] for n in names], dtype=float))


def write_mib(circuit: Circuit, out: str | Path, **options: Any) -> tuple[Path, dict[str, Any]]:
    """Write ``out/<task>_<model>/importances.json``; (its path, its content)."""
    from .fsutil import write_json

    folder, doc = mib_graph(circuit, **options)
    return write_json(Path(out) / folder / IMPORTANCE_FILE, doc, indent=None), doc


def order_decided_sizes(doc: dict[str, Any]) -> list[float]:
    """MIB's sizes (fractions of the edges) whose cutoff only EAP-IG's order decides."""
    last = RULES[-1]  # the last rule of EDGE_RULES too
    return [c["fraction"] for c in doc["metadata"]["cutoffs"] if c["decided_by"] == last]


def _coarse(log_alphas: dict[str, Tensor] | None) -> dict[str, Any] | None:
    if log_alphas is None:
        return None
    coarse = where(scored=True)
    return {g: log_alphas[g].tolist() for g in coarse if g in log_alphas}
