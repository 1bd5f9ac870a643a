"""GPT-2 (fused QKV ``c_attn``; Conv1D projections)."""

from __future__ import annotations

from torch import nn

from .base import ArchitectureAdapter, ModelDims


class GPT2Adapter(ArchitectureAdapter):
    family = "gpt2"
    model_types = ("gpt2",)

    def dims(self, model: nn.Module) -> ModelDims:
        c = model.config
        d_model = int(c.n_embd)
        return ModelDims(
            n_layers=int(c.n_layer),
            n_heads=int(c.n_head),
            head_dim=d_model // int(c.n_head),
            d_model=d_model,
            d_mlp=int(c.n_inner or 4 * d_model),
            n_kv_heads=int(c.n_head),
        )

    def layers(self, model: nn.Module) -> list[nn.Module]:
        return list(model.transformer.h)

    def embedding(self, model: nn.Module) -> nn.Module:
        # Only the token embedding is gated: position embeddings are identical on
        # the clean and corrupted prompts, so gating them would change nothing.
        return model.transformer.wte

    def attn_out_proj(self, layer: nn.Module) -> nn.Module:
        return layer.attn.c_proj

    def mlp(self, layer: nn.Module) -> nn.Module:
        return layer.mlp

    def mlp_down_proj(self, layer: nn.Module) -> nn.Module:
        return layer.mlp.c_proj
