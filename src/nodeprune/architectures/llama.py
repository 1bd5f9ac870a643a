"""Llama family: Llama, Mistral, Qwen2/3, SmolLM2 (grouped-query attention, SwiGLU MLP)."""

from __future__ import annotations

from torch import nn

from .base import ArchitectureAdapter, ModelDims, config_int


class LlamaAdapter(ArchitectureAdapter):
    family = "llama"
    model_types = ("llama", "mistral", "qwen2", "qwen3", "olmo", "olmo2")

    def dims(self, model: nn.Module) -> ModelDims:
        c = model.config
        n_heads = config_int(c, "num_attention_heads")
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // n_heads
        return ModelDims(
            n_layers=config_int(c, "num_hidden_layers"),
            n_heads=n_heads,
            head_dim=int(head_dim),
            d_model=config_int(c, "hidden_size"),
            d_mlp=config_int(c, "intermediate_size"),
            n_kv_heads=config_int(c, "num_key_value_heads", "num_attention_heads"),
        )

    def layers(self, model: nn.Module) -> list[nn.Module]:
        return list(model.model.layers)

    def attn_out_proj(self, layer: nn.Module) -> nn.Module:
        return layer.self_attn.o_proj

    def mlp(self, layer: nn.Module) -> nn.Module:
        return layer.mlp

    def mlp_down_proj(self, layer: nn.Module) -> nn.Module:
        return layer.mlp.down_proj
