"""The circuit object: hierarchical consistency and the versioned JSON file."""

from __future__ import annotations

import json

import pytest
import torch

from nodeprune.architectures.base import ModelDims
from nodeprune.circuit import Circuit, full_masks, make_consistent
from nodeprune.errors import NodepruneError
from nodeprune.granularity import GRANULARITIES

DIMS = ModelDims(n_layers=2, n_heads=2, head_dim=3, d_model=4, d_mlp=5, n_kv_heads=2)
ALL = list(GRANULARITIES)


def test_pruned_parent_prunes_children():
    masks = full_masks(DIMS)
    masks["attention_head"][0, 1] = False
    masks["mlp_block"][1] = False
    out = make_consistent(masks, ALL)
    assert not out["attention_neuron"][0, 1].any() and out["attention_neuron"][0, 0].all()
    assert not out["mlp_neuron"][1].any() and not out["mlp_output"][1].any()
    assert out["mlp_neuron"][0].all()


def test_parent_with_all_children_pruned_is_pruned():
    masks = full_masks(DIMS)
    masks["attention_neuron"][1, 0] = False  # every neuron of head (1, 0)
    masks["attention_neuron"][1, 1] = False  # ... and of head (1, 1)
    masks["mlp_neuron"][0] = False  # every hidden neuron of MLP 0
    out = make_consistent(masks, ALL)
    assert not out["attention_head"][1].any()
    assert not out["attention_block"][1]
    assert not out["mlp_block"][0]
    assert not out["mlp_output"][0].any()  # pruned top-down once the block is
    assert out["layer"].all()  # each layer still has its other half
    masks["mlp_neuron"][1] = False
    out = make_consistent(masks, ALL)
    assert not out["layer"][1] and out["layer"][0]


def test_disabled_granularities_never_prune():
    masks = full_masks(DIMS)
    masks["attention_head"][:] = False
    out = make_consistent(masks, ["attention_head"])
    assert out["attention_block"].all() and out["layer"].all()


def _circuit():
    masks = full_masks(DIMS)
    masks["attention_head"][1, 1] = False
    masks["mlp_neuron"][0, 2] = False
    masks = make_consistent(masks, ALL)
    return Circuit(
        model="tiny",
        task="ioi",
        ablation="corrupted",
        seed=3,
        dims=DIMS,
        masks=masks,
        enabled=ALL,
        config={"lam": 0.9},
        metrics={"kl": 0.1, "n": 4},
    )


def test_json_round_trip(tmp_path):
    c = _circuit()
    path = c.save(tmp_path / "c.json")
    data = json.loads(path.read_text())
    for key in (
        "format_version",
        "model",
        "task",
        "ablation",
        "seed",
        "config",
        "granularities",
        "metrics",
        "versions",
    ):
        assert key in data
    assert data["granularities"]["attention_head"] == {
        "enabled": True,
        "kept": 3,
        "total": 4,
        "per_layer": [2, 1],
    }
    back = Circuit.load(path)
    for g in GRANULARITIES:
        assert torch.equal(back.masks[g], c.masks[g])
    assert back.metrics == c.metrics and back.config == c.config and back.dims == DIMS


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(format_version=99), "format_version"),
        (lambda d: d["masks"].update(mlp_neuron=[[1, 0]]), "shape"),
        (lambda d: d.pop("model_dims"), "malformed"),
    ],
)
def test_bad_circuit_files_are_rejected(tmp_path, mutate, message):
    data = _circuit().to_json()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(NodepruneError, match=message):
        Circuit.load(path)


def test_model_mismatch_is_named():
    other = ModelDims(n_layers=3, n_heads=2, head_dim=3, d_model=4, d_mlp=5, n_kv_heads=2)
    with pytest.raises(NodepruneError, match="load the model the circuit was found on"):
        _circuit().check_matches(other, "other-model")
