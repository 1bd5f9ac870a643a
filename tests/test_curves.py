"""Fraction of nodes kept (finest units, ancestors included), curve points and areas."""

from __future__ import annotations

import math

import pytest

from nodeprune.architectures.base import ModelDims
from nodeprune.circuit import full_masks
from nodeprune.curves import (
    areas,
    curve_point,
    curves_document,
    fraction_kept,
    mean_point,
    units_kept,
)

# 2 layers x 2 heads x 3 dims = 12 attention neurons; 2 x 4 = 8 MLP neurons; 20 units.
DIMS = ModelDims(n_layers=2, n_heads=2, head_dim=3, d_model=4, d_mlp=4, n_kv_heads=2)


def test_full_and_empty():
    masks = full_masks(DIMS)
    assert fraction_kept(masks) == 1.0
    masks["layer"][:] = False
    assert fraction_kept(masks) == 0.0


def test_a_coarse_head_counts_all_its_neurons():
    masks = full_masks(DIMS)
    masks["attention_head"][0, 0] = False  # drops 3 attention neurons
    masks["mlp_block"][1] = False  # drops 4 MLP neurons
    assert units_kept(masks) == {"attention_neuron": 9, "mlp_neuron": 4}
    assert fraction_kept(masks) == pytest.approx(13 / 20)


def test_a_fine_circuit_counts_only_its_neurons():
    masks = full_masks(DIMS)
    masks["attention_neuron"][:] = False
    masks["attention_neuron"][1, 1, 2] = True
    masks["mlp_neuron"][0, :2] = False
    masks["attention_block"][1] = False  # also drops the one kept attention neuron
    assert units_kept(masks) == {"attention_neuron": 0, "mlp_neuron": 6}
    assert fraction_kept(masks) == pytest.approx(6 / 20)


def test_points_and_their_mean():
    metrics = {"normalized_faithfulness": 0.5, "kl": 0.2, "accuracy": 1.0, "n": 4}
    masks = full_masks(DIMS)
    p = curve_point(masks, metrics, lam=0.9)
    assert p == {
        "fraction_kept": 1.0,
        "normalized_faithfulness": 0.5,
        "kl": 0.2,
        "accuracy": 1.0,
        "lam": 0.9,
    }
    q = dict(p, fraction_kept=0.5, normalized_faithfulness=0.7)
    m = mean_point([p, q], scale=2.0)
    assert m["fraction_kept"] == pytest.approx(0.75)
    assert m["normalized_faithfulness"] == pytest.approx(0.6)
    assert m["spread"]["normalized_faithfulness"] == pytest.approx(math.sqrt(0.02))
    assert m["draws"] == 2 and m["scale"] == 2.0


def test_document_sorts_points_and_computes_areas():
    curves = {
        "a": [
            {"fraction_kept": 0.6, "normalized_faithfulness": 0.9},
            {"fraction_kept": 0.2, "normalized_faithfulness": 0.5},
        ],
        "b": [{"fraction_kept": 0.5, "normalized_faithfulness": math.nan}],
        "empty": [],
    }
    doc = curves_document(curves)
    assert [p["fraction_kept"] for p in doc["methods"]["a"]] == [0.2, 0.6]
    assert doc["area"]["a"]["cpr"] == pytest.approx(0.71)  # see tests/metrics/test_cpr.py
    assert doc["area"]["a"]["cmd"] == pytest.approx(0.29)
    # a point without a finite faithfulness is left out of the areas: the bare diagonal
    assert doc["area"]["b"] == {"cpr": pytest.approx(0.5), "cmd": pytest.approx(0.5), "points": 0}
    assert "empty" not in doc["methods"]
    assert areas([]) == {"cpr": pytest.approx(0.5), "cmd": pytest.approx(0.5), "points": 0}
