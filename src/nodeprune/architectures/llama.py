"""The Llama pattern: Llama and the families that kept its module names.

``model.layers[i].self_attn.o_proj`` and ``.mlp.down_proj``: Llama, Mistral and
Ministral (sliding windows), Qwen2/3 (QKV biases, QK norms), OLMo, OLMo 2 and 3 (QK
norms, post-norms), Phi-3 (fused QKV and gate-up projections, partial rotary), GLM-4
(post-norms, fused gate-up), SmolLM2/3, Helium. What differs between them happens
inside modules whose inputs and outputs nodeprune does not touch, except the
post-feedforward norms (see ``ArchitectureAdapter.mlp_paths``).
"""

from __future__ import annotations

from .base import ArchitectureAdapter


class LlamaAdapter(ArchitectureAdapter):
    family = "llama"
    model_types = (
        "llama",
        "mistral",
        "ministral",
        "qwen2",
        "qwen3",
        "olmo",
        "olmo2",
        "olmo3",
        "phi3",
        "glm4",
        "smollm3",
        "helium",
    )
    layers_path = "model.layers"
    attn_out_path = "self_attn.o_proj"
    mlp_down_path = "mlp.down_proj"
    mlp_paths = ("post_feedforward_layernorm", "post_mlp_layernorm", "mlp")
    notes = "grouped-query attention, gated MLP; QK norms, post-norms, fused QKV/gate-up"
