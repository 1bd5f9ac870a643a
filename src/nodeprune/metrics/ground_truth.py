"""Score a circuit's heads against the published GPT-2 small circuits (IOI, Greater-Than).

The reference heads ship in ``nodeprune/published/gpt2_small_circuits.json`` as
``"layer.head"`` strings. A circuit is scored only when it was found on GPT-2 small
(12 layers x 12 heads, d_model 768): elsewhere the head indices mean nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from ..circuit import Circuit
from ..errors import NodepruneError
from .head_overlap import f1_score, precision, recall
from .roc_auc import roc_auc, roc_curve

GPT2_SMALL_DIMS = {"n_layers": 12, "n_heads": 12, "head_dim": 64, "d_model": 768, "d_mlp": 3072}
Head = tuple[int, int]


@dataclass(frozen=True)
class ReferenceCircuit:
    name: str
    task: str  # the nodeprune task it belongs to
    description: str
    source: str
    heads: frozenset[Head]


@cache
def _raw() -> dict[str, Any]:
    text = resources.files("nodeprune").joinpath("published/gpt2_small_circuits.json").read_text()
    return json.loads(text)


def parse_head(text: str) -> Head:
    layer, head = text.split(".")
    return int(layer), int(head)


def reference_circuits() -> dict[str, ReferenceCircuit]:
    """Registry of the published circuits, by name."""
    raw = _raw()
    ioi_heads = frozenset(parse_head(h) for heads in raw["ioi"]["heads"].values() for h in heads)
    gt = raw["greater_than"]
    refs = [
        ReferenceCircuit(
            "ioi",
            "ioi",
            "IOI circuit (Wang et al. 2022), all head classes",
            raw["ioi"]["source"],
            ioi_heads,
        ),
        ReferenceCircuit(
            "greater_than",
            "greater_than",
            "Greater-Than circuit (Hanna et al. 2023), paper heads",
            gt["source"],
            frozenset(parse_head(h) for h in gt["paper_heads"]),
        ),
        ReferenceCircuit(
            "greater_than_acdc",
            "greater_than",
            "Greater-Than, the ACDC-style ROC variant of the head list",
            gt["source"],
            frozenset(parse_head(h) for h in gt["edge_encoding_variant"]["heads"]),
        ),
    ]
    return {r.name: r for r in refs}


def is_gpt2_small(circuit: Circuit) -> bool:
    dims = circuit.dims.to_dict()
    same = all(dims[k] == v for k, v in GPT2_SMALL_DIMS.items())
    return same and "gpt2" in circuit.model.lower().replace("-", "")


def head_scores(circuit: Circuit) -> np.ndarray | None:
    """Each head's final log-alpha, capped by its attention block's and layer's (a head
    is only as open as its most closed ancestor); None when the circuit stores none."""
    scores = circuit.extra.get("scores", {}) if circuit.extra else {}
    if "attention_head" not in scores:
        return None
    out = np.asarray(scores["attention_head"], dtype=float)
    for parent in ("attention_block", "layer"):
        if parent in scores:
            out = np.minimum(out, np.asarray(scores[parent], dtype=float)[:, None])
    return out


def kept_heads(circuit: Circuit) -> set[Head]:
    mask = circuit.effective_masks()["attention_head"]
    return {(int(l_), int(h)) for l_, h in mask.nonzero().tolist()}


def score_against(circuit: Circuit, reference: ReferenceCircuit) -> dict[str, Any]:
    """Precision, recall, F1 of the kept heads; ROC AUC of the head scores."""
    n_layers, n_heads = circuit.dims.n_layers, circuit.dims.n_heads
    for layer, head in reference.heads:
        if layer >= n_layers or head >= n_heads:
            raise NodepruneError(
                f"reference {reference.name} names head {layer}.{head}, outside the "
                f"circuit's {n_layers} x {n_heads} heads; score only GPT-2 small circuits"
            )
    kept = kept_heads(circuit)
    result: dict[str, Any] = {
        "reference": reference.name,
        "description": reference.description,
        "n_reference": len(reference.heads),
        "n_kept": len(kept),
        "precision": precision(kept, reference.heads),
        "recall": recall(kept, reference.heads),
        "f1": f1_score(kept, reference.heads),
        "roc_auc": None,
        "roc": None,
        "found": sorted(f"{l_}.{h}" for l_, h in kept & reference.heads),
        "missed": sorted(f"{l_}.{h}" for l_, h in reference.heads - kept),
    }
    scores = head_scores(circuit)
    if scores is not None:
        labels = np.zeros((n_layers, n_heads), dtype=bool)
        for layer, head in reference.heads:
            labels[layer, head] = True
        result["roc_auc"] = roc_auc(scores.ravel(), labels.ravel())
        fpr, tpr = roc_curve(scores.ravel(), labels.ravel())
        result["roc"] = {"fpr": fpr, "tpr": tpr}
    return result


def score_gpt2_circuit(circuit: Circuit) -> dict[str, dict[str, Any]]:
    """Scores against every reference, or {} when the circuit is not from GPT-2 small."""
    if not is_gpt2_small(circuit):
        return {}
    return {name: score_against(circuit, ref) for name, ref in reference_circuits().items()}


def finite(x: float | None) -> bool:
    return x is not None and not math.isnan(x)
