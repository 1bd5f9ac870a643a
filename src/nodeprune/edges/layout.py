"""Where the edge phase's hooks go in each family it supports.

Besides the node sites (architectures/), the edge phase needs the modules through which
a downstream node reads the residual stream: the norm in front of the attention (whose
input is the residual stream at the layer), the query/key/value projections (whose
output it recomputes per head from per-head inputs), the norm in front of the MLP and
the final norm in front of the logits. Only pre-norm blocks whose attention reads the
residual stream through those modules qualify; other families are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..architectures.base import submodule
from ..errors import NodepruneError


@dataclass(frozen=True)
class EdgeLayout:
    """Module paths (from a block, or from the causal LM for ``final_norm``)."""

    attn_norm: str
    mlp_norm: str
    final_norm: str
    #: Separate q/k/v projections (``nn.Linear``), or one fused ``Conv1D`` (``fused``).
    q_proj: str = ""
    k_proj: str = ""
    v_proj: str = ""
    fused: str = ""


_LLAMA = EdgeLayout(
    attn_norm="input_layernorm",
    mlp_norm="post_attention_layernorm",
    final_norm="model.norm",
    q_proj="self_attn.q_proj",
    k_proj="self_attn.k_proj",
    v_proj="self_attn.v_proj",
)
_GPT2 = EdgeLayout(
    attn_norm="ln_1", mlp_norm="ln_2", final_norm="transformer.ln_f", fused="attn.c_attn"
)

#: model_type -> layout; each is checked by tests/edges/test_edge_conformance.py.
EDGE_LAYOUTS: dict[str, EdgeLayout] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "ministral": _LLAMA,
    "olmo": _LLAMA,
    "smollm3": _LLAMA,
    "helium": _LLAMA,
    "gemma": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
    "gpt2": _GPT2,
}


def edge_layout(model: nn.Module) -> EdgeLayout:
    """The layout of ``model``'s family, or a one-line error naming the supported ones."""
    model_type = getattr(model.config, "model_type", "?")
    layout = EDGE_LAYOUTS.get(model_type)
    if layout is None:
        raise NodepruneError(
            f"the edge phase does not support model type {model_type!r} yet; it supports "
            f"{', '.join(sorted(EDGE_LAYOUTS))} (run node discovery alone for this model)"
        )
    return layout


def linear_weight(module: nn.Module) -> tuple[Tensor, Tensor | None]:
    """A projection's weight as ``[out, in]`` (transformers' Conv1D stores ``[in, out]``)
    and its bias."""
    weight = module.weight
    if hasattr(module, "nf"):
        weight = weight.t()
    return weight, getattr(module, "bias", None)


def block_module(block: nn.Module, path: str) -> nn.Module:
    return submodule(block, path)
