"""Routed experts as nodes, on the stock fused experts module (architectures/moe.py).

transformers keeps every routed expert of a mixture-of-experts block in one module,
``experts(hidden [N, d], top_k_index [N, k], top_k_weights [N, k]) -> [N, d]``, with
``down_proj`` [E, d, h]: expert e adds ``w_e * down_proj[e] @ act(...)`` to each token
that routes to it. There is no module between an expert's hidden neurons and its down
projection, so nothing here computes an expert itself: both functions call the module,
with ``down_proj`` replaced (``torch.func.functional_call``), whatever experts
implementation (eager loop, grouped matmul) it dispatches to.

An expert neuron's value is its router-weighted activation ``w_e * hidden_e`` (0 where
the router did not choose expert e), which its slice of ``down_proj`` maps linearly
onto the expert's contribution to the MLP output; an expert's gate multiplies all of its
neurons, so gating an expert at m mixes its whole contribution, ``m * clean + (1 - m) *
ablated``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call


def _call(module: nn.Module, down_proj: Tensor, hidden: Tensor, index: Tensor, weights: Tensor):
    return functional_call(module, {"down_proj": down_proj}, (hidden, index, weights))


@torch.no_grad()
def routed_hidden(module: nn.Module, hidden: Tensor, index: Tensor, weights: Tensor) -> Tensor:
    """Each expert's router-weighted hidden activations, [N, E * h] (expert-major; 0
    for the experts a token was not routed to).

    Each (token, chosen expert) pair is run as its own top-1 row, with ``down_proj``
    replaced by a selector that copies d of the h hidden activations to the output
    (ceil(h / d) calls, each as costly as the block's own experts pass)."""
    n_experts, d_model, d_hidden = module.down_proj.shape
    n_tokens, top_k = index.shape
    token = torch.arange(n_tokens, device=index.device).repeat_interleave(top_k)
    expert = index.reshape(-1)
    routed = expert < n_experts  # an index of E marks a pair another device computes
    token, expert = token[routed], expert[routed]
    pair_weights = weights.reshape(-1)[routed].unsqueeze(-1)
    rows = hidden[token]
    out = hidden.new_zeros(n_tokens, n_experts, d_hidden)
    for start in range(0, d_hidden, d_model):
        width = min(d_model, d_hidden - start)
        pick = hidden.new_zeros(n_experts, d_model, d_hidden)
        cols = torch.arange(width, device=hidden.device)
        pick[:, cols, start + cols] = 1
        part = _call(module, pick, rows, expert.unsqueeze(-1), pair_weights)
        out[token, expert, start : start + width] = part[:, :width].to(out.dtype)
    return out.reshape(n_tokens, n_experts * d_hidden)


def gated_experts_output(
    module: nn.Module,
    hidden: Tensor,
    index: Tensor,
    weights: Tensor,
    mask: Tensor,
    ablated: Tensor | None,
) -> Tensor:
    """The experts' output with each expert neuron mixed by its gate ``mask`` [E * h]
    with its ablated value ``ablated`` ([N, E * h] per token, [E * h] a mean; None:
    zero): ``down(m * clean + (1 - m) * ablated)``, the clean part by the module with
    its down projection's columns scaled by m, the ablated part through ``down_proj``
    (linear, no bias: the adapter refuses biased expert weights)."""
    down = module.down_proj
    n_experts, _, d_hidden = down.shape
    m = mask.reshape(n_experts, d_hidden)
    kept = _call(module, down * m.unsqueeze(1), hidden, index, weights)
    if ablated is None:
        return kept
    rest = (1 - m) * ablated.reshape(-1, n_experts, d_hidden)
    return kept + torch.einsum("neh,edh->nd", rest, down).to(kept.dtype)
