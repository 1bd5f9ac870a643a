"""GPT-2 (fused QKV ``c_attn``; Conv1D projections)."""

from __future__ import annotations

from torch import nn

from .base import ArchitectureAdapter


class GPT2Adapter(ArchitectureAdapter):
    family = "gpt2"
    model_types = ("gpt2",)
    layers_path = "transformer.h"
    attn_out_path = "attn.c_proj"
    mlp_down_path = "mlp.c_proj"
    notes = "fused QKV, Conv1D projections, learned positions"

    def embedding(self, model: nn.Module) -> nn.Module:
        # Only the token embedding is gated: position embeddings are identical on
        # the clean and corrupted prompts, so gating them would change nothing.
        return model.transformer.wte
