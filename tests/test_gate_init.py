"""Where the gates start: the attribution order is the attribution baseline's score for
every granularity, places each gate by its rank, and does not depend on the seed."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_discovery_config, tiny_model

from nodeprune.ablator import Ablator
from nodeprune.baselines.attribution import signed_scores, site_gradients
from nodeprune.discovery import Discovery
from nodeprune.errors import NodepruneError
from nodeprune.gate_init import gate_attribution, rank_positions
from nodeprune.intervention import GatedModel
from nodeprune.splits import build_task_data
from nodeprune.tasks import get_task

SCORED = ["attention_block", "mlp_block", "attention_head", "attention_neuron", "mlp_neuron"]


def test_rank_positions_order_by_magnitude_over_minus_one_to_one():
    scores = torch.tensor([[0.5, -3.0], [0.1, 2.0]])
    pos = rank_positions(scores)
    assert pos.shape == scores.shape
    # |scores| ranks: 0.1 < 0.5 < 2.0 < 3.0
    torch.testing.assert_close(pos, torch.tensor([[-1 / 3, 1.0], [-1.0, 1 / 3]]))
    assert rank_positions(torch.tensor([0.2])).item() == 1.0


def test_gate_attribution_equals_the_attribution_baselines_scores(tokenizer):
    """A head's (a block's) own-gate gradient is the sum of its neurons' site gradients,
    which is what the attribution baseline scores it by (the site gradients themselves
    are checked against finite differences in tests/baselines/test_attribution.py)."""
    loaded = tiny_model("llama", tokenizer)
    gated = GatedModel(loaded)
    try:
        task = get_task("ioi")
        data = build_task_data(gated, task, {"train": 12, "test": 4}, 0, False, 8)
        ablator = Ablator("corrupted", gated).fit(data.train)
        mine = gate_attribution(gated, ablator, task, data.train, SCORED, 8)
        baseline = signed_scores(site_gradients(gated, ablator, task, data.train, 8))
        for g in ("mlp_block", "attention_head", "attention_neuron", "mlp_neuron"):
            torch.testing.assert_close(mine[g], baseline[g], rtol=1e-4, atol=1e-6)
        # An attention block's gate scales all of its heads: the sum of theirs.
        torch.testing.assert_close(
            mine["attention_block"], baseline["attention_head"].sum(-1), rtol=1e-4, atol=1e-6
        )
        assert all(mine[g].abs().sum() > 0 for g in SCORED)
    finally:
        gated.remove()


def _start(tokenizer, **overrides) -> dict[str, torch.Tensor]:
    cfg = tiny_discovery_config(granularities=SCORED, steps=2, **overrides)
    with Discovery(tiny_model("llama", tokenizer), cfg) as discovery:
        start = {g: la.detach().clone() for g, la in discovery.gates.log_alphas().items()}
        discovery.run(progress=False)  # and it trains from there
    return start


def test_attribution_start_is_the_same_for_every_seed_and_ordered_by_score(tokenizer):
    first = _start(tokenizer, gate_init="attribution", seed=0, init_spread=1.5)
    second = _start(tokenizer, gate_init="attribution", seed=1, init_spread=1.5)
    uniform = _start(tokenizer, seed=0, init_spread=1.5)
    uniform_other = _start(tokenizer, seed=1, init_spread=1.5)
    for g in SCORED:
        torch.testing.assert_close(first[g], second[g])
        assert not torch.equal(uniform[g], uniform_other[g])
        assert first[g].min() >= 2.0 - 1.5 - 1e-6 and first[g].max() <= 2.0 + 1.5 + 1e-6
        if first[g].numel() > 1:
            assert first[g].max() - first[g].min() == pytest.approx(3.0)


def test_attribution_start_follows_the_score_order(tokenizer):
    cfg = tiny_discovery_config(granularities=SCORED, gate_init="attribution", steps=1)
    with Discovery(tiny_model("llama", tokenizer), cfg) as discovery:
        start = discovery.gates.log_alphas()
        scores = gate_attribution(
            discovery.gated, discovery.ablator, discovery.task, discovery.data.train, SCORED, 16
        )
        for g in SCORED:
            by_score = torch.argsort(scores[g].flatten().abs(), stable=True)
            assert (start[g].flatten()[by_score].diff() >= 0).all()


def test_unknown_gate_init_is_refused():
    with pytest.raises(NodepruneError, match="gate_init must be one of uniform, attribution"):
        tiny_discovery_config(gate_init="attr").validate()
