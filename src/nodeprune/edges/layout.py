"""Where the edge phase's hooks go in each family it supports.

Besides the node sites (architectures/), the edge phase needs the modules through which
a downstream node reads the residual stream: the norm in front of the attention (whose
input is the residual stream at the layer), the query/key/value projections (whose
output it recomputes per head from per-head inputs), the norm in front of the MLP and
the final norm in front of the logits. Families without a conformance row (those
nodeprune only detects by their module pattern) are refused.

Norms on a block's outputs (Gemma 2/3, GLM-4, OLMo 2/3): the MLP's is its output node
already (the adapter's MLP output site); the attention's (``attn_post_norm``) makes what
the heads add to the residual stream one norm over all of them, which forward.py
recomputes per downstream input. OLMo 2/3 have no norm in front of the attention or the
MLP: the projections and the MLP read the residual stream itself.

Mixtures of experts (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE) keep Llama's layout: the MLP
block, router and experts together, reads one normed input and is one node upstream.

Parallel blocks (GPT-NeoX, GPT-J, Phi-1/2, Falcon): a layer's attention and MLP both read
the layer's input, so its MLP reads none of its own heads (``parallel``). GPT-J, Phi and
Falcon's one-norm layouts feed both branches from one norm module (``mlp_norm ==
attn_norm``): the MLP's input is then recomputed from that norm at the MLP module's
input (``mlp_input``) and the norm's own output is left to the attention.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from torch import Tensor, nn

from ..architectures.base import submodule
from ..errors import NodepruneError

#: How a fused QKV projection lays out its output, in units of ``head_dim``:
#: ``blocks``: all queries, then the key heads, then the value heads (GPT-2, Phi-3,
#: Falcon multi-query); ``per_head``: [q, k, v] of each head in turn (GPT-NeoX, Falcon
#: without multi-query); ``kv_groups``: per key/value head, its group's queries then its
#: key and value (Falcon's new decoder architecture).
FUSED_ORDERS = ("blocks", "per_head", "kv_groups")


@dataclass(frozen=True)
class EdgeLayout:
    """Module paths (from a block, or from the causal LM for ``final_norm``). An empty
    ``attn_norm``/``mlp_norm``: the block reads the residual stream without a norm
    (OLMo 2/3); ``attn_post_norm``: the norm on the attention's output (Gemma 2/3, GLM-4,
    OLMo 2/3)."""

    attn_norm: str
    mlp_norm: str
    final_norm: str
    attn_post_norm: str = ""
    #: Separate q/k/v projections (``nn.Linear``), or one fused projection (``fused``,
    #: laid out as ``fused_order`` says).
    q_proj: str = ""
    k_proj: str = ""
    v_proj: str = ""
    fused: str = ""
    fused_order: str = "blocks"
    #: Attention and MLP read the same residual stream (the layer's input).
    parallel: bool = False
    #: The MLP module whose input is the MLP norm's output (needed when the norm is
    #: shared with the attention, where the MLP's input is replaced at the MLP).
    mlp_input: str = "mlp"

    @property
    def shared_norm(self) -> bool:
        return bool(self.attn_norm) and self.mlp_norm == self.attn_norm

    def fused_unit(self, part: str, index: int, n_heads: int, n_kv_heads: int) -> int:
        """Where query head (``part`` q) or key/value head ``index``'s slice starts in the
        fused projection's output, in units of ``head_dim``."""
        p = "qkv".index(part)
        if self.fused_order == "per_head":
            return 3 * index + p
        if self.fused_order == "kv_groups":
            per_group = n_heads // n_kv_heads
            if part == "q":
                return (index // per_group) * (per_group + 2) + index % per_group
            return index * (per_group + 2) + per_group + p - 1
        return (0, n_heads, n_heads + n_kv_heads)[p] + index


def _separate_qkv(attention: str) -> dict[str, str]:
    """The paths of separate q/k/v projections under the attention module ``attention``."""
    return {f"{p}_proj": f"{attention}.{p}_proj" for p in "qkv"}


_LLAMA = EdgeLayout(
    attn_norm="input_layernorm",
    mlp_norm="post_attention_layernorm",
    final_norm="model.norm",
    **_separate_qkv("self_attn"),
)
# The others as they differ from Llama's (or GPT-2's) module names.
_PHI3 = replace(_LLAMA, q_proj="", k_proj="", v_proj="", fused="self_attn.qkv_proj")
_GEMMA2 = replace(
    _LLAMA, mlp_norm="pre_feedforward_layernorm", attn_post_norm="post_attention_layernorm"
)
_GLM4 = replace(_LLAMA, attn_post_norm="post_self_attn_layernorm")
_OLMO2 = replace(_LLAMA, attn_norm="", mlp_norm="", attn_post_norm="post_attention_layernorm")
_PHI = replace(
    _LLAMA, mlp_norm="input_layernorm", final_norm="model.final_layernorm", parallel=True
)
_GPT2 = EdgeLayout(
    attn_norm="ln_1", mlp_norm="ln_2", final_norm="transformer.ln_f", fused="attn.c_attn"
)
_GPTJ = replace(_GPT2, mlp_norm="ln_1", fused="", parallel=True, **_separate_qkv("attn"))


def _gpt_neox(config: object) -> EdgeLayout:
    # use_parallel_residual=False gives a sequential block over the same modules.
    return EdgeLayout(
        attn_norm="input_layernorm",
        mlp_norm="post_attention_layernorm",
        final_norm="gpt_neox.final_layer_norm",
        fused="attention.query_key_value",
        fused_order="per_head",
        parallel=bool(getattr(config, "use_parallel_residual", True)),
    )


def _falcon(config: object) -> EdgeLayout:
    # As FalconDecoderLayer and FalconAttention._split_heads decide.
    new = bool(getattr(config, "new_decoder_architecture", False))
    parallel = new or bool(getattr(config, "parallel_attn", True))
    if new:
        two_norms = getattr(config, "num_ln_in_parallel_attn", None) in (None, 2)
        norms = ("ln_attn", "ln_mlp") if two_norms else ("input_layernorm",) * 2
        order = "kv_groups"
    else:
        norms = ("input_layernorm", "input_layernorm" if parallel else "post_attention_layernorm")
        order = "blocks" if getattr(config, "multi_query", True) else "per_head"
    return EdgeLayout(
        attn_norm=norms[0],
        mlp_norm=norms[1],
        final_norm="transformer.ln_f",
        fused="self_attention.query_key_value",
        fused_order=order,
        parallel=parallel,
    )


def _fixed(layout: EdgeLayout) -> Callable[[object], EdgeLayout]:
    return lambda config: layout


#: model_type -> its layout for a model's config; each is checked by
#: tests/architectures/test_edge_conformance.py.
EDGE_LAYOUTS: dict[str, Callable[[object], EdgeLayout]] = {
    "llama": _fixed(_LLAMA),
    "mistral": _fixed(_LLAMA),
    "ministral": _fixed(_LLAMA),
    "olmo": _fixed(_LLAMA),
    "smollm3": _fixed(_LLAMA),
    "helium": _fixed(_LLAMA),
    "gemma": _fixed(_LLAMA),
    "qwen2": _fixed(_LLAMA),
    "qwen3": _fixed(_LLAMA),
    "phi3": _fixed(_PHI3),
    "gemma2": _fixed(_GEMMA2),
    "gemma3_text": _fixed(_GEMMA2),
    "glm4": _fixed(_GLM4),
    "olmo2": _fixed(_OLMO2),
    "olmo3": _fixed(_OLMO2),
    # Mixtures of experts: the MLP block (router and experts) reads one normed input.
    "mixtral": _fixed(_LLAMA),
    "qwen2_moe": _fixed(_LLAMA),
    "qwen3_moe": _fixed(_LLAMA),
    "olmoe": _fixed(_LLAMA),
    "gpt2": _fixed(_GPT2),
    "gpt_neox": _gpt_neox,
    "gptj": _fixed(_GPTJ),
    "phi": _fixed(_PHI),
    "falcon": _falcon,
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
    return layout(model.config)


def linear_weight(module: nn.Module) -> tuple[Tensor, Tensor | None]:
    """A projection's weight as ``[out, in]`` (transformers' Conv1D stores ``[in, out]``)
    and its bias."""
    weight = module.weight
    if hasattr(module, "nf"):
        weight = weight.t()
    return weight, getattr(module, "bias", None)


def block_module(block: nn.Module, path: str) -> nn.Module:
    return submodule(block, path)
