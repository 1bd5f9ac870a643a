"""Hard-concrete gates and the gate hierarchy."""

from __future__ import annotations

import math

import torch

from nodeprune.architectures.base import ModelDims
from nodeprune.gates import (
    BETA,
    GAMMA,
    ZETA,
    GateSet,
    deterministic_gate,
    effective_gates,
    expected_l0,
    sample_gate,
)
from nodeprune.granularity import GRANULARITIES

DIMS = ModelDims(n_layers=3, n_heads=2, head_dim=4, d_model=8, d_mlp=5, n_kv_heads=1)


def test_deterministic_gate_matches_formula():
    la = torch.tensor([-5.0, -1.0, 0.0, 0.3, 5.0])
    expected = (torch.sigmoid(la) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)
    torch.testing.assert_close(deterministic_gate(la), expected)
    # gate > 0.5 exactly when log-alpha > 0
    assert ((deterministic_gate(la) > 0.5) == (la > 0)).all()


def test_samples_are_in_unit_interval_and_hit_both_ends():
    la = torch.zeros(20000)
    z = sample_gate(la, torch.Generator().manual_seed(0))
    assert z.min() >= 0 and z.max() <= 1
    assert (z == 0).any() and (z == 1).any() and ((z > 0) & (z < 1)).any()


def test_expected_l0_is_probability_of_nonzero():
    la = torch.full((200000,), 0.7)
    z = sample_gate(la, torch.Generator().manual_seed(1))
    empirical = (z > 0).float().mean()
    analytic = expected_l0(la[:1])
    assert abs(float(empirical) - float(analytic)) < 0.01
    assert float(analytic) == float(
        torch.sigmoid(torch.tensor(0.7) - BETA * math.log(-GAMMA / ZETA))
    )


def test_gateset_shapes_and_gradient():
    gates = GateSet(DIMS, list(GRANULARITIES), seed=3)
    sample = gates.sample(torch.Generator().manual_seed(0))
    for g, value in sample.items():
        assert tuple(value.shape) == GRANULARITIES[g].shape(DIMS)
    sum(v.sum() for v in sample.values()).backward()
    assert gates.log_alpha.grad is not None and gates.log_alpha.grad.abs().sum() > 0


def test_disabled_granularity_has_no_parameters():
    gates = GateSet(DIMS, ["attention_head", "mlp_neuron"])
    assert gates.log_alpha.numel() == 3 * 2 + 3 * 5
    assert set(gates.sample()) == {"attention_head", "mlp_neuron"}


def test_effective_gate_is_product_with_ancestors():
    own = {
        "layer": torch.tensor([1.0, 0.5, 0.0]),
        "attention_block": torch.tensor([0.8, 1.0, 1.0]),
        "attention_head": torch.full((3, 2), 0.5),
        "attention_neuron": torch.rand(3, 2, 4),
        "mlp_neuron": torch.rand(3, 5),
    }
    eff = effective_gates(own, DIMS, torch.ones(1))
    expected = (
        own["layer"][:, None, None]
        * own["attention_block"][:, None, None]
        * own["attention_head"][:, :, None]
        * own["attention_neuron"]
    )
    torch.testing.assert_close(eff["attention_neuron"], expected)
    torch.testing.assert_close(eff["mlp_neuron"], own["layer"][:, None] * own["mlp_neuron"])
    # disabled mlp_block and mlp_output count as open: the output gate is the layer's
    torch.testing.assert_close(eff["mlp_output"], own["layer"][:, None].expand(3, 8))
    assert eff["embedding"].shape == (1,) and float(eff["embedding"]) == 1.0


def test_granularity_names_accept_all_and_hyphens():
    from nodeprune.granularity import DEFAULT_GRANULARITIES, check_granularity_names

    assert check_granularity_names(["all"]) == list(GRANULARITIES)
    assert check_granularity_names(["mlp-neuron", "layer"]) == ["layer", "mlp_neuron"]
    assert set(DEFAULT_GRANULARITIES) < set(GRANULARITIES)
