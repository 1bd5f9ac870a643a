"""GPT-NeoX / Pythia (parallel attention and MLP, fused QKV, partial rotary)."""

from __future__ import annotations

from torch import nn

from .base import ArchitectureAdapter, ModelDims


class GPTNeoXAdapter(ArchitectureAdapter):
    family = "gpt_neox"
    model_types = ("gpt_neox",)

    def dims(self, model: nn.Module) -> ModelDims:
        c = model.config
        n_heads = int(c.num_attention_heads)
        return ModelDims(
            n_layers=int(c.num_hidden_layers),
            n_heads=n_heads,
            head_dim=int(c.hidden_size) // n_heads,
            d_model=int(c.hidden_size),
            d_mlp=int(c.intermediate_size),
            n_kv_heads=n_heads,
        )

    def layers(self, model: nn.Module) -> list[nn.Module]:
        return list(model.gpt_neox.layers)

    def attn_out_proj(self, layer: nn.Module) -> nn.Module:
        return layer.attention.dense

    def mlp(self, layer: nn.Module) -> nn.Module:
        return layer.mlp

    def mlp_down_proj(self, layer: nn.Module) -> nn.Module:
        return layer.mlp.dense_4h_to_h
