"""Families with a post-feedforward norm (Gemma 2/3, OLMo 2/3, GLM-4): the MLP output
site is the norm's output, because the norm would undo a gate applied before it
(RMSNorm(m * x) == RMSNorm(x)) and leave the MLP-block gate without a gradient under
zero ablation, where that gate acts at the MLP output."""

from __future__ import annotations

import pytest
import torch
from test_intervention import _batch
from tiny_models import ROWS, build

from nodeprune.ablator import Ablator
from nodeprune.intervention import GatedModel

POST_NORM_ROWS = [r for r in ROWS if "post-norms" in r.features]


def _mlp_block_grad(loaded, batch, ablation: str) -> float:
    gated = GatedModel(loaded, ["mlp_block"])
    try:
        ablator = Ablator(ablation, gated).fit(batch)
        gate = torch.full((loaded.dims.n_layers,), 0.5, requires_grad=True)
        args = (batch.clean_ids, batch.attention_mask, batch.answer_pos)
        full = gated.plain_logits(*args).log_softmax(-1)
        out = gated.gated_logits(*args, {"mlp_block": gate}, ablator.values(batch))
        kl = (full.exp() * (full - out.log_softmax(-1))).sum(-1).mean()
        kl.backward()
    finally:
        gated.remove()
    return float(gate.grad.abs().max())


@pytest.mark.parametrize("row", POST_NORM_ROWS, ids=[r.id for r in POST_NORM_ROWS])
def test_the_mlp_block_gate_has_a_gradient_under_zero_ablation(row, tokenizer):
    loaded = build(row, tokenizer)
    assert loaded.adapter.mlp(loaded.adapter.layers(loaded.model)[0]) is (
        loaded.model.get_submodule(row.mlp_output.format(i=0))
    )
    batch = _batch(loaded)
    # Corrupted ablation gates the hidden neurons, before the norm, and so is a fair
    # yardstick: gating before the norm under zero ablation gives ~1e-5 of it.
    assert _mlp_block_grad(loaded, batch, "zero") > 0.1 * _mlp_block_grad(
        loaded, batch, "corrupted"
    )
