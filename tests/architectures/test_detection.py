"""Model types that are not registered: those whose modules and logits follow a known
adapter's pattern load with a one-line notice and gate like verified ones; the others
stop with one line naming what is missing."""

from __future__ import annotations

import pytest
import torch
import transformers as tf
from conftest import tiny_model
from reference import ablated_values, node_patches, patched_logits
from test_conformance import _gated_logits
from test_intervention import _batch, _open_gates
from tiny_models import INIT_RANGE, SIZES, TOKENS, _llama_like, build
from torch import nn

from nodeprune.architectures import ADAPTERS
from nodeprune.errors import NodepruneError
from nodeprune.models import wrap_model

# (row, the adapter whose pattern it follows). VaultGemma has Llama's module names but
# soft-caps its logits: only the logits probe tells it from Llama and picks Gemma's.
UNLISTED = (
    (_llama_like("arcee", tf.ArceeConfig, tf.ArceeForCausalLM), "llama"),
    (_llama_like("ernie4_5", tf.Ernie4_5Config, tf.Ernie4_5ForCausalLM, head_dim=8), "llama"),
    (
        _llama_like(
            "vaultgemma", tf.VaultGemmaConfig, tf.VaultGemmaForCausalLM,
            head_dim=8, final_logit_softcapping=0.1,
        ),
        "gemma",
    ),
)  # fmt: skip


def _notes(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "nodeprune" in line]


@pytest.mark.parametrize("row, family", UNLISTED, ids=[r.id for r, _ in UNLISTED])
def test_an_unlisted_type_with_a_known_pattern_gates_like_a_verified_one(
    row, family, tokenizer, capsys
):
    assert row.model_type not in ADAPTERS
    capsys.readouterr()
    loaded = build(row, tokenizer)
    notes = _notes(capsys)
    assert len(notes) == 1, notes
    assert notes[0].startswith("nodeprune: note:")
    assert repr(row.model_type) in notes[0] and f"{family} pattern" in notes[0]
    assert loaded.adapter.family == family
    model, batch = loaded.model, _batch(loaded)
    plain = patched_logits(model, batch, [], [])
    got = _gated_logits(loaded, batch, _open_gates(loaded), "corrupted")
    torch.testing.assert_close(got, plain, atol=1e-5, rtol=1e-5)
    for granularity, index in (("attention_head", (0, 1)), ("mlp_block", (0,))):
        patches = node_patches(row, granularity, index, loaded.dims.head_dim)
        values = ablated_values(model, patches, batch, "corrupted")
        gates = _open_gates(loaded)
        gates[granularity][index] = 0.0
        got = _gated_logits(loaded, batch, gates, "corrupted")
        want = patched_logits(model, batch, patches, values)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def _tiny(config_class, model_class, **extra):
    config = config_class(**{**SIZES, **TOKENS, **extra})
    config.initializer_range = INIT_RANGE
    torch.manual_seed(0)
    return model_class(config)


@pytest.mark.parametrize(
    "config_class, model_class, extra, missing",
    [
        # Cohere multiplies the LM head's logits by logit_scale.
        (tf.CohereConfig, tf.CohereForCausalLM, {}, "its logits are not the LM head"),
        (
            tf.Starcoder2Config,
            tf.Starcoder2ForCausalLM,
            {"num_key_value_heads": 4},
            "no module model.layers.0.mlp.down_proj",
        ),
    ],
    ids=["cohere", "starcoder2"],
)
def test_a_type_that_fits_no_pattern_names_what_is_missing(
    config_class, model_class, extra, missing, tokenizer, capsys
):
    model = _tiny(config_class, model_class, **extra)
    with pytest.raises(NodepruneError) as err:
        wrap_model(model, tokenizer, "tiny")
    message = str(err.value)
    assert f"architecture {model.config.model_type!r} is not supported" in message
    assert missing in message
    assert "src/nodeprune/architectures/" in message and "\n" not in message
    assert not _notes(capsys)


def test_a_mixture_of_experts_with_dense_layers_between_is_refused(tokenizer):
    model = _tiny(
        tf.Qwen3MoeConfig, tf.Qwen3MoeForCausalLM, num_experts=4, num_experts_per_tok=2,
        moe_intermediate_size=24, mlp_only_layers=[1],
    )  # fmt: skip
    with pytest.raises(NodepruneError) as err:
        wrap_model(model, tokenizer, "tiny")
    message = str(err.value)
    assert "no module model.layers.1.mlp.experts" in message
    assert "layers with a dense MLP between them are not supported" in message


def test_modules_that_disagree_with_the_config_are_refused(tokenizer):
    loaded = tiny_model("llama", tokenizer)
    loaded.model.model.layers[1].mlp.down_proj = nn.Linear(40, 32, bias=False)
    with pytest.raises(NodepruneError, match="layer 1's mlp.down_proj takes 40 inputs"):
        wrap_model(loaded.model, tokenizer, "tiny")


def test_a_model_whose_own_forward_fails_is_named(tokenizer, monkeypatch):
    model = _tiny(tf.ArceeConfig, tf.ArceeForCausalLM)

    def broken(*args, **kwargs):
        raise RuntimeError("shapes do not match")

    monkeypatch.setattr(model, "forward", broken)
    with pytest.raises(NodepruneError, match="own forward pass failed.*shapes do not match"):
        wrap_model(model, tokenizer, "tiny")
