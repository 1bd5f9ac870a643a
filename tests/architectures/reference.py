"""Activation patching with plain PyTorch hooks on the stock modules: the reference that
nodeprune's gating must reproduce. Shares no code with nodeprune.intervention.

A node is a set of columns of one module's input or output (``Patch``); patching it
replaces those columns by their ablated value: the same module's value on the
corrupted prompt (a separate forward pass), its mean over the real tokens of the
clean prompts, or zero.

A routed expert (or some of its hidden neurons) is a part of the fused experts
module's output: what that expert adds to each token, computed here by hand from the
expert's weights and the router's choice (``expert_contribution``); patching it swaps
that part for its ablated value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tiny_models import Row
from torch import Tensor, nn


@dataclass(frozen=True)
class Patch:
    path: str
    kind: str  # "input" | "output" | "expert" (cols: that expert's hidden neurons)
    cols: slice
    expert: int = -1


def expert_contribution(experts: nn.Module, args: tuple, expert: int, cols: slice) -> Tensor:
    """What hidden neurons ``cols`` of ``expert`` add to each token's output [N, d]:
    ``w * down[:, cols] @ (act(gate) * up)[cols]`` where the router chose it, else 0."""
    hidden, index, weights = args[:3]
    gate, up = nn.functional.linear(hidden, experts.gate_up_proj[expert]).chunk(2, dim=-1)
    neurons = (experts.act_fn(gate) * up)[:, cols]
    out = neurons @ experts.down_proj[expert][:, cols].T
    routed_weight = (weights * (index == expert)).sum(dim=-1, keepdim=True)
    return out * routed_weight.to(out.dtype)


def node_patches(row: Row, granularity: str, index: tuple[int, ...], head_dim: int) -> list[Patch]:
    """Which columns of which stock modules a node is."""
    layer, every = index[0], slice(None)
    at = {name: getattr(row, name).format(i=layer) for name in ("attn_z", "hidden", "mlp")}
    if granularity == "embedding":
        return [Patch(row.embed, "output", every)]
    if granularity == "layer":
        return [Patch(at["attn_z"], "input", every), Patch(at["mlp"], "output", every)]
    if granularity == "attention_block":
        return [Patch(at["attn_z"], "input", every)]
    if granularity == "attention_head":
        h = index[1]
        return [Patch(at["attn_z"], "input", slice(h * head_dim, (h + 1) * head_dim))]
    if granularity == "attention_neuron":
        col = index[1] * head_dim + index[2]
        return [Patch(at["attn_z"], "input", slice(col, col + 1))]
    if granularity == "mlp_block":
        return [Patch(at["mlp"], "output", every)]
    if granularity == "mlp_neuron":
        return [Patch(at["hidden"], "input", slice(index[1], index[1] + 1))]
    if granularity == "mlp_output":
        path = row.mlp_output.format(i=layer)
        return [Patch(path, "output", slice(index[1], index[1] + 1))]
    experts = row.experts.format(i=layer)
    if granularity == "expert":
        return [Patch(experts, "expert", every, expert=index[1])]
    if granularity == "expert_neuron":
        return [Patch(experts, "expert", slice(index[2], index[2] + 1), expert=index[1])]
    raise ValueError(granularity)


def _first(value):
    return value[0] if isinstance(value, tuple) else value


@torch.no_grad()
def record(model: nn.Module, patches: list[Patch], ids: Tensor, mask: Tensor) -> list[Tensor]:
    """Each patch's full module input/output on one forward pass."""
    seen: dict[int, Tensor] = {}
    handles = []
    for n, p in enumerate(patches):
        module = model.get_submodule(p.path)
        if p.kind == "expert":
            hook = module.register_forward_hook(
                lambda m, args, out, n=n, p=p: seen.__setitem__(
                    n, expert_contribution(m, args, p.expert, p.cols).detach().clone()
                )
            )
        elif p.kind == "input":
            hook = module.register_forward_pre_hook(
                lambda m, args, n=n: seen.__setitem__(n, args[0].detach().clone())
            )
        else:
            hook = module.register_forward_hook(
                lambda m, args, out, n=n: seen.__setitem__(n, _first(out).detach().clone())
            )
        handles.append(hook)
    try:
        model(input_ids=ids, attention_mask=mask)
    finally:
        for h in handles:
            h.remove()
    # Per token [B, T, ...], also where a module sees the tokens flattened (MoE blocks).
    ordered = [seen[n] for n in range(len(patches))]
    return [v.reshape(*ids.shape, -1) if v.dim() == 2 else v for v in ordered]


def ablated_values(model: nn.Module, patches: list[Patch], batch, ablation: str) -> list[Tensor]:
    """What each patched module input/output takes (all columns; the patch picks some)."""
    if ablation == "corrupted":
        return record(model, patches, batch.corrupted_ids, batch.attention_mask)
    clean = record(model, patches, batch.clean_ids, batch.attention_mask)
    if ablation == "zero":
        return [torch.zeros_like(v) for v in clean]
    assert ablation == "mean"
    real = batch.attention_mask.bool()
    return [v[real].mean(dim=0).expand_as(v) for v in clean]


@torch.no_grad()
def patched_logits(model: nn.Module, batch, patches: list[Patch], values: list[Tensor]) -> Tensor:
    """The model's own logits at the answer positions, with the patches applied."""
    handles = []

    def replace(x: Tensor, p: Patch, value: Tensor) -> Tensor:
        x = x.clone()
        x[..., p.cols] = value.reshape(*x.shape[:-1], -1)[..., p.cols].to(x.dtype)
        return x

    for p, value in zip(patches, values, strict=True):
        module = model.get_submodule(p.path)
        if p.kind == "expert":

            def swap_expert(m, args, out, p=p, v=value):
                clean = expert_contribution(m, args, p.expert, p.cols)
                return out - clean + v.reshape(out.shape).to(out.dtype)

            hook = module.register_forward_hook(swap_expert)
        elif p.kind == "input":
            hook = module.register_forward_pre_hook(
                lambda m, args, p=p, v=value: (replace(args[0], p, v), *args[1:])
            )
        else:

            def out_hook(m, args, out, p=p, v=value):
                if isinstance(out, tuple):
                    return (replace(out[0], p, v), *out[1:])
                return replace(out, p, v)

            hook = module.register_forward_hook(out_hook)
        handles.append(hook)
    try:
        logits = model(input_ids=batch.clean_ids, attention_mask=batch.attention_mask).logits
    finally:
        for h in handles:
            h.remove()
    rows = torch.arange(logits.shape[0])
    return logits[rows, batch.answer_pos].float()
