"""Top-k circuits: requested sizes, children inside kept parents, best scores first;
random circuits have the requested sizes and differ between draws."""

from __future__ import annotations

import pytest
import torch

from nodeprune.architectures.base import ModelDims
from nodeprune.baselines.selection import (
    FULL_SCALE,
    random_scores,
    scale_grid,
    scaled_counts,
    select_top_k,
)
from nodeprune.circuit import make_consistent
from nodeprune.errors import NodepruneError

DIMS = ModelDims(n_layers=3, n_heads=4, head_dim=5, d_model=8, d_mlp=10, n_kv_heads=2)
FOUR = ["mlp_block", "attention_head", "attention_neuron", "mlp_neuron"]


def _is_consistent(masks, enabled):
    again = make_consistent(masks, enabled)
    return all(torch.equal(again[g], masks[g]) for g in masks)


@pytest.mark.parametrize("seed", range(5))
def test_random_circuits_have_the_requested_sizes(seed):
    counts = {"mlp_block": 2, "attention_head": 7, "attention_neuron": 20, "mlp_neuron": 9}
    scores = random_scores(DIMS, FOUR, torch.Generator().manual_seed(seed))
    masks = select_top_k(scores, counts, DIMS, FOUR)
    assert {g: int(masks[g].sum()) for g in FOUR} == counts
    assert _is_consistent(masks, FOUR)
    # children only inside kept parents
    assert not (masks["attention_neuron"] & ~masks["attention_head"].unsqueeze(-1)).any()
    assert not (masks["mlp_neuron"] & ~masks["mlp_block"].unsqueeze(-1)).any()


def test_random_draws_differ_and_repeat_with_the_seed():
    counts = {"mlp_block": 2, "attention_head": 6, "attention_neuron": 15, "mlp_neuron": 8}

    def draw(seed):
        scores = random_scores(DIMS, FOUR, torch.Generator().manual_seed(seed))
        return select_top_k(scores, counts, DIMS, FOUR)

    a, b, again = draw(0), draw(1), draw(0)
    assert any(not torch.equal(a[g], b[g]) for g in FOUR)
    assert all(torch.equal(a[g], again[g]) for g in FOUR)


def test_top_k_keeps_the_highest_scores_within_kept_parents():
    enabled = ["attention_head", "attention_neuron"]
    heads = torch.zeros(3, 4)
    heads[0, 1], heads[2, 3] = 5.0, 4.0
    neurons = torch.arange(60, dtype=torch.float32).view(3, 4, 5)  # last head highest
    scores = {"attention_head": heads, "attention_neuron": neurons}
    masks = select_top_k(scores, {"attention_head": 2, "attention_neuron": 3}, DIMS, enabled)
    # the 3 best neurons inside the two best heads are the last three of head (2, 3),
    # although head (2, 2) has better neurons than head (0, 1)...
    assert masks["attention_neuron"].nonzero().tolist() == [[2, 3, 2], [2, 3, 3], [2, 3, 4]]
    # ...and head (0, 1), left without neurons, is pruned by consistency
    assert masks["attention_head"].nonzero().tolist() == [[2, 3]]


def test_disabled_granularities_keep_everything_under_kept_parents():
    scores = random_scores(DIMS, ["attention_head"], torch.Generator().manual_seed(0))
    masks = select_top_k(scores, {"attention_head": 5}, DIMS, ["attention_head"])
    assert int(masks["attention_neuron"].sum()) == 5 * DIMS.head_dim
    assert bool(masks["mlp_neuron"].all())


def test_sizes_are_capped_at_what_the_parents_allow():
    scores = random_scores(DIMS, FOUR, torch.Generator().manual_seed(0))
    counts = {"mlp_block": 1, "attention_head": 1, "attention_neuron": 50, "mlp_neuron": 50}
    masks = select_top_k(scores, counts, DIMS, FOUR)
    assert int(masks["attention_neuron"].sum()) == DIMS.head_dim
    assert int(masks["mlp_neuron"].sum()) == DIMS.d_mlp


def test_missing_or_misshaped_scores_are_refused():
    with pytest.raises(NodepruneError):
        select_top_k({}, {"attention_head": 1}, DIMS, ["attention_head"])
    with pytest.raises(NodepruneError):
        select_top_k(
            {"attention_head": torch.zeros(2, 2)}, {"attention_head": 1}, DIMS, ["attention_head"]
        )


def test_scaled_counts_go_from_empty_through_the_profile_to_full():
    profile = {"attention_head": 3, "mlp_neuron": 15, "mlp_block": 0}  # of 12, 30, 3
    assert scaled_counts(profile, 0.0, DIMS) == {
        "attention_head": 0,
        "mlp_neuron": 0,
        "mlp_block": 0,
    }
    assert scaled_counts(profile, 0.5, DIMS) == {
        "attention_head": 2,
        "mlp_neuron": 8,
        "mlp_block": 0,
    }
    assert scaled_counts(profile, 1.0, DIMS) == profile
    # halfway from the profile to full: 3 + 4.5, 15 + 7.5, 0 + 1.5 (rounded half to even)
    assert scaled_counts(profile, 1.5, DIMS) == {
        "attention_head": 8,
        "mlp_neuron": 22,
        "mlp_block": 2,
    }
    full = {"attention_head": 12, "mlp_neuron": 30, "mlp_block": 3}
    assert scaled_counts(profile, FULL_SCALE, DIMS) == full
    assert scaled_counts(profile, 5.0, DIMS) == full
    assert scale_grid([0.5, 1.0, 5.0, 2.0, 0.5]) == [0.5, 1.0, FULL_SCALE]
