"""The second real model, Gemma 3 270M (gemma3_text: post-attention and post-MLP norms,
scaled embeddings, sliding-window layers, QK norms, head_dim 256 != 640/4): it loads by
its built-in name, answers IOI, and discovery runs on it with exact open gates (slow)."""

from __future__ import annotations

import pytest
import torch

from nodeprune import Discovery, DiscoveryConfig
from nodeprune.granularity import GRANULARITIES

pytestmark = pytest.mark.slow


def test_gemma3_layout_and_ioi_answer(gemma):
    d = gemma.dims
    assert (d.n_layers, d.n_heads, d.n_kv_heads, d.head_dim, d.d_model, d.d_mlp) == (
        18, 4, 1, 256, 640, 2048,
    )  # fmt: skip
    assert gemma.model.config.model_type == "gemma3_text"
    ids = gemma.tokenizer(
        "When Mary and John went to the store, John gave a drink to", return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        top = gemma.model(ids).logits[0, -1].argmax()
    assert gemma.tokenizer.decode(top) == " Mary"


def test_open_gates_give_the_plain_logits_and_discovery_runs(gemma):
    cfg = DiscoveryConfig(
        model="gemma3-270m", steps=4, n_train=16, n_val=0, n_test=16, batch_size=8,
        granularities=["all"],
    )  # fmt: skip
    discovery = Discovery(gemma, cfg)
    try:
        assert discovery.data.counts["train"]["kept"] >= 8  # it answers most IOI prompts
        part = discovery.data.test.select(slice(0, 8))
        args = (part.clean_ids, part.attention_mask, part.answer_pos)
        like = next(gemma.model.parameters())
        dims = gemma.dims
        open_gates = {
            g: torch.ones(GRANULARITIES[g].shape(dims), dtype=like.dtype)
            for g in discovery.gated.granularities
        }
        with torch.no_grad():
            plain = discovery.gated.plain_logits(*args)
            gated = discovery.gated.gated_logits(
                *args, gates=open_gates, ablated=discovery.ablator.values(part)
            )
        assert torch.allclose(plain, gated, atol=1e-4, rtol=1e-4)
        circuit = discovery.run(progress=False)
    finally:
        discovery.gated.remove()
    assert circuit.metrics["logit_diff_full"] > 1.0
