"""Falcon (parallel attention and MLP, fused QKV; multi-query or grouped KV heads)."""

from __future__ import annotations

from .base import ArchitectureAdapter


class FalconAdapter(ArchitectureAdapter):
    family = "falcon"
    model_types = ("falcon",)
    layers_path = "transformer.h"
    attn_out_path = "self_attention.dense"
    mlp_down_path = "mlp.dense_4h_to_h"
    notes = "parallel attention and MLP, fused QKV, multi-query or new decoder architecture"
    #: FalconDecoderLayer adds the attention output to the MLP output in place
    #: (``mlp_output += attention_output``).
    sites_modified_in_place = ("mlp_out",)

    def n_kv_heads(self, config: object, n_heads: int) -> int:
        # As FalconAttention decides: one shared KV head for the old multi-query
        # architecture, num_kv_heads otherwise.
        new = getattr(config, "new_decoder_architecture", False)
        if not new and getattr(config, "multi_query", False):
            return 1
        return int(getattr(config, "num_kv_heads", None) or n_heads)
