"""One tiny randomly initialised model per conformance row, built in-process from its
config, with the stock modules that hold each node named from the modeling files (not
from nodeprune's adapters), so that the reference patching checks the adapters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import transformers as tf
from conftest import MODEL_CLASSES, VOCAB, tiny_config
from torch import nn

from nodeprune.models import LoadedModel, wrap_model

# Sizes shared by every row: 2 layers, 4 heads, d_model 32. The tokenizer's
# <|endoftext|> is id 0, which every row uses as bos, eos and pad.
SIZES = dict(num_hidden_layers=2, num_attention_heads=4, hidden_size=32, intermediate_size=48)
TOKENS = dict(vocab_size=VOCAB, pad_token_id=0, bos_token_id=0, eos_token_id=0)
# Larger than the families' 0.02, so that one neuron's patch moves the logits well
# above the comparison tolerance.
INIT_RANGE = 0.1


@dataclass(frozen=True)
class Row:
    id: str
    model_type: str
    make: Callable[[], Any]  # -> the model's config
    model_class: type[nn.Module]
    #: Dotted paths of the stock modules ({i}: the layer): ``embed``'s output is the
    #: embedding; ``attn_z``'s input every head's output side by side; ``hidden``'s
    #: input the MLP hidden neurons; ``mlp``'s output the MLP block's output; and
    #: ``mlp_output``'s output the MLP output dimensions (the post-feedforward norm
    #: where a family has one: what the MLP adds to the residual stream).
    embed: str
    attn_z: str
    hidden: str
    mlp: str
    mlp_output: str
    #: What the row exercises, for the table.
    features: tuple[str, ...] = field(default=())
    #: A mixture of experts: the fused routed-experts module (empty: a dense model).
    experts: str = ""


def _llama_like(
    row_id: str,
    config_class: type,
    model_class: type,
    features: tuple[str, ...] = (),
    mlp_output: str = "model.layers.{i}.mlp",
    model_type: str | None = None,
    hidden: str = "model.layers.{i}.mlp.down_proj",
    experts: str = "",
    **config: Any,
) -> Row:
    def make() -> Any:
        return config_class(**{**SIZES, **TOKENS, **config})

    return Row(
        id=row_id,
        model_type=model_type or row_id,
        make=make,
        model_class=model_class,
        embed="model.embed_tokens",
        attn_z="model.layers.{i}.self_attn.o_proj",
        hidden=hidden,
        mlp="model.layers.{i}.mlp",
        mlp_output=mlp_output,
        features=features,
        experts=experts,
    )


POST_FF = "model.layers.{i}.post_feedforward_layernorm"
#: Mixtures of experts: only routed experts (no dense hidden layer), or Qwen2-MoE's.
ROUTED = dict(hidden="", experts="model.layers.{i}.mlp.experts")
SHARED = dict(hidden="model.layers.{i}.mlp.shared_expert.down_proj", experts=ROUTED["experts"])

ROWS: tuple[Row, ...] = (
    Row(
        "gpt2", "gpt2", lambda: tiny_config("gpt2"), MODEL_CLASSES["gpt2"],
        "transformer.wte", "transformer.h.{i}.attn.c_proj", "transformer.h.{i}.mlp.c_proj",
        "transformer.h.{i}.mlp", "transformer.h.{i}.mlp", ("fused QKV", "Conv1D"),
    ),
    Row(
        "gpt_neox", "gpt_neox", lambda: tiny_config("gpt_neox"), MODEL_CLASSES["gpt_neox"],
        "gpt_neox.embed_in", "gpt_neox.layers.{i}.attention.dense",
        "gpt_neox.layers.{i}.mlp.dense_4h_to_h", "gpt_neox.layers.{i}.mlp",
        "gpt_neox.layers.{i}.mlp", ("parallel attention and MLP", "partial rotary"),
    ),
    Row(
        "llama", "llama", lambda: tiny_config("llama"), MODEL_CLASSES["llama"],
        "model.embed_tokens", "model.layers.{i}.self_attn.o_proj",
        "model.layers.{i}.mlp.down_proj", "model.layers.{i}.mlp", "model.layers.{i}.mlp",
        ("grouped-query attention",),
    ),
    _llama_like(
        "mistral", tf.MistralConfig, tf.MistralForCausalLM, ("sliding window",),
        num_key_value_heads=2, sliding_window=3,
    ),
    _llama_like(
        "ministral", tf.MinistralConfig, tf.MinistralForCausalLM, ("sliding window",),
        num_key_value_heads=2, sliding_window=3, head_dim=8,
    ),
    _llama_like(
        "qwen2", tf.Qwen2Config, tf.Qwen2ForCausalLM, ("QKV biases",), num_key_value_heads=2
    ),
    _llama_like(
        "qwen3", tf.Qwen3Config, tf.Qwen3ForCausalLM, ("QK norms", "head_dim != hidden/heads"),
        num_key_value_heads=2, head_dim=16,
    ),
    _llama_like("olmo", tf.OlmoConfig, tf.OlmoForCausalLM, ("QKV clipping",), clip_qkv=4.0),
    _llama_like(
        "olmo2", tf.Olmo2Config, tf.Olmo2ForCausalLM, ("QK norms", "post-norms"), POST_FF
    ),
    _llama_like(
        "olmo3", tf.Olmo3Config, tf.Olmo3ForCausalLM,
        ("QK norms", "post-norms", "sliding window"), POST_FF, sliding_window=3,
        layer_types=["sliding_attention", "full_attention"],
    ),
    _llama_like(
        "phi3", tf.Phi3Config, tf.Phi3ForCausalLM,
        ("fused QKV", "fused gate-up", "partial rotary"), partial_rotary_factor=0.5,
    ),
    _llama_like(
        "glm4", tf.Glm4Config, tf.Glm4ForCausalLM,
        ("fused gate-up", "post-norms", "partial rotary"), "model.layers.{i}.post_mlp_layernorm",
        num_key_value_heads=2, head_dim=8,
    ),
    _llama_like(
        "smollm3", tf.SmolLM3Config, tf.SmolLM3ForCausalLM, ("layers without RoPE",),
        num_key_value_heads=2, no_rope_layers=[1, 0],
    ),
    _llama_like(
        "helium", tf.HeliumConfig, tf.HeliumForCausalLM, (), num_key_value_heads=2, head_dim=8
    ),
    _llama_like(
        "gemma", tf.GemmaConfig, tf.GemmaForCausalLM,
        ("scaled embeddings", "multi-query", "head_dim != hidden/heads"),
        num_key_value_heads=1, head_dim=16,
    ),
    _llama_like(
        "gemma2", tf.Gemma2Config, tf.Gemma2ForCausalLM,
        ("scaled embeddings", "post-norms", "sliding window", "attention and logit soft-capping",
         "head_dim != hidden/heads"),
        POST_FF, num_key_value_heads=2, head_dim=16, sliding_window=3,
        final_logit_softcapping=0.1, attn_logit_softcapping=1.0, query_pre_attn_scalar=16,
    ),
    _llama_like(
        "gemma3_text", tf.Gemma3TextConfig, tf.Gemma3ForCausalLM,
        ("scaled embeddings", "post-norms", "QK norms", "sliding window", "logit soft-capping",
         "head_dim != hidden/heads"),
        POST_FF, num_key_value_heads=2, head_dim=16, sliding_window=3,
        layer_types=["sliding_attention", "full_attention"], final_logit_softcapping=0.1,
        query_pre_attn_scalar=16,
    ),
    Row(
        "phi", "phi",
        lambda: tf.PhiConfig(**SIZES, **TOKENS, partial_rotary_factor=0.5, qk_layernorm=True),
        tf.PhiForCausalLM, "model.embed_tokens", "model.layers.{i}.self_attn.dense",
        "model.layers.{i}.mlp.fc2", "model.layers.{i}.mlp", "model.layers.{i}.mlp",
        ("parallel attention and MLP", "partial rotary", "QK layer norms"),
    ),
    Row(
        "gptj", "gptj",
        lambda: tf.GPTJConfig(
            n_layer=2, n_head=4, n_embd=32, n_inner=48, rotary_dim=4, n_positions=64, **TOKENS
        ),
        tf.GPTJForCausalLM, "transformer.wte", "transformer.h.{i}.attn.out_proj",
        "transformer.h.{i}.mlp.fc_out", "transformer.h.{i}.mlp", "transformer.h.{i}.mlp",
        ("parallel attention and MLP", "partial rotary"),
    ),
    *(
        Row(
            row_id, "falcon",
            lambda extra=extra: tf.FalconConfig(
                num_hidden_layers=2, num_attention_heads=4, hidden_size=32,
                ffn_hidden_size=48, **TOKENS, **extra,
            ),
            tf.FalconForCausalLM, "transformer.word_embeddings",
            "transformer.h.{i}.self_attention.dense", "transformer.h.{i}.mlp.dense_4h_to_h",
            "transformer.h.{i}.mlp", "transformer.h.{i}.mlp", features,
        )
        for row_id, extra, features in (
            ("falcon", {}, ("parallel attention and MLP", "multi-query", "fused QKV")),
            (
                "falcon-new-arch",
                dict(new_decoder_architecture=True, num_kv_heads=2),
                ("parallel attention and MLP", "grouped KV heads", "two layer norms"),
            ),
            (
                "falcon-alibi",
                dict(alibi=True, multi_query=False, parallel_attn=False, bias=True),
                ("ALiBi", "sequential attention and MLP", "biases"),
            ),
        )
    ),
    # Mixtures of experts: 4 routed experts, 2 per token; d_expert 48 > d_model 32
    # where it can be, so recording an expert's hidden activations takes two calls.
    _llama_like(
        "mixtral", tf.MixtralConfig, tf.MixtralForCausalLM,
        ("routed experts",), **ROUTED, num_key_value_heads=2, num_local_experts=4,
        num_experts_per_tok=2,
    ),
    _llama_like(
        "qwen2_moe", tf.Qwen2MoeConfig, tf.Qwen2MoeForCausalLM,
        ("routed experts", "shared expert", "QKV biases"), **SHARED, num_key_value_heads=2,
        num_experts=4, num_experts_per_tok=2, moe_intermediate_size=40,
        shared_expert_intermediate_size=24, decoder_sparse_step=1, norm_topk_prob=False,
    ),
    _llama_like(
        "qwen3_moe", tf.Qwen3MoeConfig, tf.Qwen3MoeForCausalLM,
        ("routed experts", "QK norms", "head_dim != hidden/heads"), **ROUTED, num_key_value_heads=2,
        head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=48,
        decoder_sparse_step=1, norm_topk_prob=True,
    ),
    _llama_like(
        "olmoe", tf.OlmoeConfig, tf.OlmoeForCausalLM, ("routed experts", "QK norms"),
        **ROUTED, num_experts=4, num_experts_per_tok=2,
    ),
)  # fmt: skip


def build(row: Row, tokenizer, seed: int = 0) -> LoadedModel:
    config = row.make()
    config.initializer_range = INIT_RANGE
    torch.manual_seed(seed)
    model = row.model_class(config)
    assert model.config.model_type == row.model_type
    return wrap_model(model, tokenizer, f"tiny-{row.id}")
