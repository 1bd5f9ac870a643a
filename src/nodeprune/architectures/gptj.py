"""GPT-J (parallel attention and MLP, rotary on the first ``rotary_dim`` dimensions)."""

from __future__ import annotations

from .base import ArchitectureAdapter


class GPTJAdapter(ArchitectureAdapter):
    family = "gptj"
    model_types = ("gptj",)
    layers_path = "transformer.h"
    attn_out_path = "attn.out_proj"
    mlp_down_path = "mlp.fc_out"
    notes = "parallel attention and MLP, partial rotary"
