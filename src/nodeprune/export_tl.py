"""The TransformerLens hook names of a circuit's kept nodes."""

from __future__ import annotations

from typing import Any

from .architectures.base import ArchitectureAdapter
from .circuit import Circuit

# The TransformerLens hook names are the same for every family nodeprune supports.
_HOOKS = ArchitectureAdapter()


def _kept_indices(mask: Any) -> list[int]:
    return [int(i) for i in mask.nonzero().flatten().tolist()]


def tl_hooks(circuit: Circuit) -> dict[str, Any]:
    """The TransformerLens hooks of the kept nodes. Each entry names a node, its hook
    and the indices kept there: ``head`` and ``dims`` (kept ``d_head`` positions) on
    ``blocks.L.attn.hook_z`` (shape [batch, pos, head, d_head]); ``neurons`` on
    ``blocks.L.mlp.hook_post``; ``dims`` on ``blocks.L.hook_mlp_out`` when some MLP
    output dimensions are pruned."""
    dims, masks = circuit.dims, circuit.effective_masks()
    entries: list[dict[str, Any]] = []
    if bool(masks["embedding"][0]):
        entries.append({"node": "input", "hook": _HOOKS.hook_name("embed", 0)})
    for i in range(dims.n_layers):
        for h in range(dims.n_heads):
            if bool(masks["attention_head"][i, h]):
                entries.append(
                    {
                        "node": f"a{i}.h{h}",
                        "hook": _HOOKS.hook_name("attn_z", i),
                        "layer": i,
                        "head": h,
                        "dims": _kept_indices(masks["attention_neuron"][i, h]),
                    }
                )
        if bool(masks["mlp_block"][i]):
            entries.append(
                {
                    "node": f"m{i}",
                    "hook": _HOOKS.hook_name("mlp_hidden", i),
                    "layer": i,
                    "neurons": _kept_indices(masks["mlp_neuron"][i]),
                }
            )
            out_dims = _kept_indices(masks["mlp_output"][i])
            if len(out_dims) < dims.d_model:
                entries.append(
                    {
                        "node": f"m{i}",
                        "hook": _HOOKS.hook_name("mlp_out", i),
                        "layer": i,
                        "dims": out_dims,
                    }
                )
    return {
        "model": circuit.model,
        "task": circuit.task,
        "hook_names": sorted({e["hook"] for e in entries}, key=_hook_order),
        "nodes": entries,
    }


def _hook_order(name: str) -> tuple[int, str]:
    parts = name.split(".")
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1, name)
