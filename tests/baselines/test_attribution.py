"""Attribution scores are the gradient of the task metric wrt each node's gate at gates = 1:
they match finite differences of the gated model, and predict single-node patching."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from nodeprune.ablator import Ablator
from nodeprune.baselines.attribution import (
    ATTRIBUTION_GRANULARITIES,
    attribution_scores,
    signed_scores,
    site_gradients,
)
from nodeprune.granularity import GRANULARITIES
from nodeprune.intervention import GatedModel
from nodeprune.splits import build_task_data
from nodeprune.tasks import get_task


@pytest.fixture(scope="module")
def setting(tokenizer):
    llama_model = tiny_model("llama", tokenizer)
    # float64 activations (the logits come back as float32), so that central finite
    # differences with a moderate step are accurate to about 1e-4.
    llama_model.model.double()
    gated = GatedModel(llama_model)
    task = get_task("ioi")
    data = build_task_data(gated, task, {"train": 12, "test": 4}, 0, False, 8)
    ablator = Ablator("corrupted", gated).fit(data.train)
    yield gated, task, data.train, ablator
    gated.remove()


@pytest.fixture(scope="module")
def signed(setting):
    gated, task, batch, ablator = setting
    return signed_scores(site_gradients(gated, ablator, task, batch, 8))


def _metric(gated, task, batch, ablator, gates) -> float:
    total = 0.0
    for part in batch.batches(8):
        ablated = ablator.values(part)
        with torch.no_grad():
            logits = gated.gated_logits(
                part.clean_ids, part.attention_mask, part.answer_pos, gates, ablated
            )
        total += float(task.metric(logits, part).double().sum())
    return total / len(batch)


def _gates_with(dims, name, index, value):
    shape = GRANULARITIES[name].shape(dims)
    gate = torch.ones(shape, dtype=torch.float64)
    gate[index] = value
    return {name: gate}


# (granularity whose gate is perturbed, scored granularity, node index)
NODES = [
    ("attention_head", "attention_head", (0, 1)),
    ("attention_head", "attention_head", (1, 3)),
    ("attention_neuron", "attention_neuron", (1, 2, 5)),
    ("mlp_neuron", "mlp_neuron", (0, 7)),
    ("mlp_neuron", "mlp_neuron", (1, 20)),
    # pruning an MLP block replaces its output: its score is that of all output dims
    ("mlp_output", "mlp_block", (1,)),
]


@pytest.mark.parametrize("gate_name, scored, index", NODES)
def test_scores_equal_finite_differences(setting, signed, gate_name, scored, index):
    gated, task, batch, ablator = setting
    eps = 1e-2
    up = _metric(gated, task, batch, ablator, _gates_with(gated.dims, gate_name, index, 1 + eps))
    down = _metric(gated, task, batch, ablator, _gates_with(gated.dims, gate_name, index, 1 - eps))
    finite = (up - down) / (2 * eps)
    assert float(signed[scored][index]) == pytest.approx(finite, rel=1e-3, abs=1e-6)


def test_scores_predict_direct_patching_of_heads(setting, signed):
    gated, task, batch, ablator = setting
    heads = signed["attention_head"]
    base = _metric(gated, task, batch, ablator, {})
    effects, estimates = [], []
    for layer in range(gated.dims.n_layers):
        for head in range(gated.dims.n_heads):
            pruned = _gates_with(gated.dims, "attention_head", (layer, head), 0.0)
            effects.append(_metric(gated, task, batch, ablator, pruned) - base)
            estimates.append(-float(heads[layer, head]))  # linear estimate of pruning
    effects_t, estimates_t = torch.tensor(effects), torch.tensor(estimates)
    # Attribution patching is first order: close, not exact, on a random tiny model.
    assert torch.allclose(estimates_t, effects_t, atol=0.2 * float(effects_t.abs().max()))
    assert torch.corrcoef(torch.stack([effects_t, estimates_t]))[0, 1] > 0.9


def test_importance_is_absolute_and_shaped(setting, signed):
    gated, task, batch, ablator = setting
    scores = attribution_scores(gated, ablator, task, batch, 8)
    assert set(scores) == set(ATTRIBUTION_GRANULARITIES)
    for g, s in scores.items():
        assert tuple(s.shape) == GRANULARITIES[g].shape(gated.dims)
        assert bool((s >= 0).all())
    # a head's score is the |sum| of its neurons' signed scores, not the sum of |.|
    assert torch.allclose(scores["attention_head"], signed["attention_neuron"].sum(-1).abs())
