"""Conformance of every registered model type, each a tiny random model (tiny_models.py).

With every gate open, nodeprune's logits are the plain model's. Closing one node of
each granularity, under corrupted, mean and zero ablation, gives exactly the logits of
patching that node's activation with plain hooks on the stock modules (reference.py,
two forward passes). And a few discovery steps lower the loss. Adding a family to the
registry without a row here fails ``test_every_registered_type_has_a_row``.
"""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_discovery_config
from reference import ablated_values, node_patches, patched_logits
from test_intervention import _batch, _open_gates
from tiny_models import ROWS, build

from nodeprune import Discovery
from nodeprune.ablator import Ablator
from nodeprune.architectures import ADAPTERS, get_adapter
from nodeprune.intervention import GatedModel

ABLATIONS = ("corrupted", "mean", "zero")
#: One node of each granularity, in layer 0 so that its effect crosses every later layer.
NODES = (
    ("embedding", (0,)),
    ("layer", (0,)),
    ("attention_block", (0,)),
    ("attention_head", (0, 1)),
    ("attention_neuron", (0, 1, 2)),
    ("mlp_block", (0,)),
    ("mlp_neuron", (0, 3)),
    ("mlp_output", (0, 5)),
    ("expert", (0, 1)),
    ("expert_neuron", (0, 1, 5)),
)


def _has(row, granularity: str) -> bool:
    """Whether the row's model has such nodes: experts only in a mixture of experts,
    dense MLP neurons not where the MLP is only routed experts."""
    if granularity.startswith("expert"):
        return bool(row.experts)
    return granularity != "mlp_neuron" or bool(row.hidden)


#: Every (row, node) the row's model has.
CASES = [
    pytest.param(row, g, index, id=f"{row.id}-{g}")
    for row in ROWS
    for g, index in NODES
    if _has(row, g)
]


@pytest.fixture(scope="module", params=ROWS, ids=[r.id for r in ROWS])
def row_model(request, tokenizer):
    row = request.param
    loaded = build(row, tokenizer)
    return row, loaded, _batch(loaded)


def _gated_logits(loaded, batch, gates, ablation):
    gated = GatedModel(loaded)
    try:
        ablator = Ablator(ablation, gated).fit(batch)
        return gated.gated_logits(
            batch.clean_ids, batch.attention_mask, batch.answer_pos, gates, ablator.values(batch)
        )
    finally:
        gated.remove()  # the model is shared by the row's tests


def test_every_registered_type_has_a_row():
    missing = set(ADAPTERS) - {r.model_type for r in ROWS}
    assert not missing, f"registered without a conformance row: {sorted(missing)}"


def test_the_registered_adapter_gates_it_without_a_notice(row_model):
    row, loaded, _ = row_model
    notices: list[str] = []
    assert get_adapter(loaded.model, notice=notices.append) is ADAPTERS[row.model_type]
    assert loaded.adapter is ADAPTERS[row.model_type]
    assert not notices


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_open_gates_give_the_plain_logits(row_model, ablation):
    _, loaded, batch = row_model
    plain = patched_logits(loaded.model, batch, [], [])
    got = _gated_logits(loaded, batch, _open_gates(loaded), ablation)
    torch.testing.assert_close(got, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("ablation", ABLATIONS)
@pytest.mark.parametrize("row_model, granularity, index", CASES, indirect=["row_model"])
def test_a_closed_node_is_the_patched_node(row_model, granularity, index, ablation):
    row, loaded, batch = row_model
    model = loaded.model
    patches = node_patches(row, granularity, index, loaded.dims.head_dim)
    want = patched_logits(model, batch, patches, ablated_values(model, patches, batch, ablation))
    # The node matters, so matching it is not matching the plain model.
    assert (want - patched_logits(model, batch, [], [])).abs().max() > 1e-3
    gates = _open_gates(loaded)
    gates[granularity][index] = 0.0
    got = _gated_logits(loaded, batch, gates, ablation)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_a_few_discovery_steps_lower_the_loss(row, tokenizer):
    """Pure faithfulness (lam 0) from mostly closed gates: the loss falls, and the
    gates open, only if the gates' gradients come back from the model's output."""
    loaded = build(row, tokenizer)
    init = -1.0
    cfg = tiny_discovery_config(
        steps=40, n_train=16, n_test=8, lr=0.5, lam=0.0, init_log_alpha=init, seed=0
    )
    discovery = Discovery(loaded, cfg)
    discovery.run(progress=False)
    losses = [h.loss for h in discovery.history]
    assert sum(losses[:5]) > 0
    assert sum(losses[-5:]) < sum(losses[:5])
    assert float(discovery.gates.log_alpha.detach().mean()) > init + 0.2
