"""Phi-1, Phi-1.5 and Phi-2 (parallel attention and MLP, partial rotary, biased LM head).

Phi-3 renamed its modules to the Llama names and is handled by the Llama adapter.
"""

from __future__ import annotations

from .base import ArchitectureAdapter


class PhiAdapter(ArchitectureAdapter):
    family = "phi"
    model_types = ("phi",)
    layers_path = "model.layers"
    attn_out_path = "self_attn.dense"
    mlp_down_path = "mlp.fc2"
    notes = "parallel attention and MLP, partial rotary, optional QK layer norms"
