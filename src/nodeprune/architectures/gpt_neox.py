"""GPT-NeoX / Pythia (parallel attention and MLP, fused QKV, partial rotary)."""

from __future__ import annotations

from .base import ArchitectureAdapter


class GPTNeoXAdapter(ArchitectureAdapter):
    family = "gpt_neox"
    model_types = ("gpt_neox",)
    layers_path = "gpt_neox.layers"
    attn_out_path = "attention.dense"
    mlp_down_path = "mlp.dense_4h_to_h"
    notes = "parallel attention and MLP, fused QKV, partial rotary"
