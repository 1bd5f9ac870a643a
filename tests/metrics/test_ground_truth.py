"""Scoring against the published GPT-2 small circuits, on hand-built 12 x 12 circuits."""

from __future__ import annotations

import math

import pytest
import torch

from nodeprune.architectures.base import ModelDims
from nodeprune.circuit import Circuit, full_masks
from nodeprune.errors import NodepruneError
from nodeprune.metrics.ground_truth import (
    ReferenceCircuit,
    head_scores,
    is_gpt2_small,
    reference_circuits,
    score_against,
    score_gpt2_circuit,
)

GPT2 = ModelDims(n_layers=12, n_heads=12, head_dim=64, d_model=768, d_mlp=3072, n_kv_heads=12)


def _circuit(kept: list[tuple[int, int]], scores=None, model="gpt2", dims=GPT2) -> Circuit:
    masks = full_masks(dims)
    masks["attention_head"][:] = False
    for layer, head in kept:
        masks["attention_head"][layer, head] = True
    extra = {"scores": scores} if scores is not None else {}
    return Circuit(model, "ioi", "corrupted", 0, dims, masks, ["attention_head"], extra=extra)


def test_shipped_references_match_the_papers():
    refs = reference_circuits()
    assert len(refs["ioi"].heads) == 26  # Wang et al.: 26 heads in 7 classes
    assert (9, 9) in refs["ioi"].heads and (10, 7) in refs["ioi"].heads
    assert refs["greater_than"].heads == {
        (5, 1), (5, 5), (6, 1), (6, 9), (7, 10), (8, 8), (8, 11), (9, 1)
    }  # fmt: skip


def test_precision_recall_auc_hand_computed():
    ref = ReferenceCircuit("toy", "ioi", "toy", "test", frozenset({(9, 9), (10, 0), (3, 0)}))
    # Kept: two reference heads and two others -> precision 2/4, recall 2/3.
    kept = [(9, 9), (10, 0), (0, 0), (1, 1)]
    scores = torch.full((12, 12), -5.0)
    scores[9, 9], scores[10, 0], scores[3, 0] = 3.0, 2.0, -6.0  # one reference head ranks last
    scores[0, 0], scores[1, 1] = 1.0, 1.0
    c = _circuit(kept, {"attention_head": scores.tolist()})
    out = score_against(c, ref)
    assert out["precision"] == 0.5
    assert out["recall"] == 2 / 3
    assert out["found"] == ["10.0", "9.9"] and out["missed"] == ["3.0"]
    # 3 positives x 141 negatives: (9,9) and (10,0) beat all 141; (3,0) beats none.
    assert out["roc_auc"] == pytest.approx(2 * 141 / (3 * 141))


def test_parent_scores_cap_head_scores():
    heads = torch.zeros(12, 12)
    heads[2] = 4.0
    block = torch.ones(12)
    block[2] = -1.0  # layer 2's attention block is closed
    c = _circuit([], {"attention_head": heads.tolist(), "attention_block": block.tolist()})
    s = head_scores(c)
    assert s[2].tolist() == [-1.0] * 12 and s[3].tolist() == [0.0] * 12


def test_without_scores_there_is_no_auc():
    out = score_against(_circuit([(9, 9)]), reference_circuits()["ioi"])
    assert out["roc_auc"] is None and out["precision"] == 1.0


def test_only_gpt2_small_is_scored():
    tiny = ModelDims(n_layers=2, n_heads=4, head_dim=8, d_model=32, d_mlp=128, n_kv_heads=4)
    assert not is_gpt2_small(_circuit([], model="gpt2", dims=tiny))
    assert not is_gpt2_small(_circuit([], model="llama-like"))
    assert is_gpt2_small(_circuit([], model="openai-community/gpt2"))
    assert score_gpt2_circuit(_circuit([], model="tiny", dims=tiny)) == {}
    scored = score_gpt2_circuit(_circuit([(9, 9)]))
    assert set(scored) == set(reference_circuits())
    assert math.isnan(scored["ioi"]["f1"]) is False


def test_reference_outside_the_model_is_an_error():
    tiny = ModelDims(n_layers=2, n_heads=4, head_dim=8, d_model=32, d_mlp=128, n_kv_heads=4)
    with pytest.raises(NodepruneError, match="outside"):
        score_against(_circuit([], dims=tiny), reference_circuits()["ioi"])


def test_heads_of_pruned_blocks_are_not_counted_as_found(tmp_path):
    # Blocks gated, heads not: on disk the head mask is absent and loads as all kept.
    masks = full_masks(GPT2)
    masks["attention_block"][:] = False
    masks["attention_block"][9] = True
    c = Circuit("gpt2", "ioi", "corrupted", 0, GPT2, masks, ["attention_block"])
    loaded = Circuit.load(c.save(tmp_path / "circuit.json"))
    out = score_against(loaded, reference_circuits()["ioi"])
    assert out["found"] and all(h.startswith("9.") for h in out["found"])
    assert out["precision"] == pytest.approx(len(out["found"]) / 12)
