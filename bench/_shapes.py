"""Randomly initialised models of given shapes (SmolLM2's tokenizer and vocabulary), so
cost can be measured on sizes no package ships. Cost does not depend on the weights."""

from __future__ import annotations

SHAPES = {
    # name: (family, config kwargs)
    "tiny-llama": ("llama", dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                 num_key_value_heads=2, intermediate_size=128)),
    "gpt2-medium": ("gpt2", dict(n_layer=24, n_embd=1024, n_head=16)),
    "llama-1b": ("llama", dict(num_hidden_layers=16, hidden_size=2048, num_attention_heads=32,
                               num_key_value_heads=8, intermediate_size=5632)),
}  # fmt: skip


def random_model(shape: str, dtype: str = "float32", device: str = "cpu"):
    """``random:<shape>`` as a frozen LoadedModel."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from nodeprune.models import DTYPES, load_tokenizer, wrap_model

    family, kwargs = SHAPES[shape]
    tokenizer = load_tokenizer("smollm2-135m")
    vocab = len(tokenizer)
    torch.manual_seed(0)
    if family == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=1024, **kwargs))
    else:
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=vocab, tie_word_embeddings=True, max_position_embeddings=2048, **kwargs
            )
        )
    model = model.to(device=device, dtype=DTYPES[dtype])
    return wrap_model(model, tokenizer, f"random:{shape}")
