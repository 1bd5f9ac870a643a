"""Mixture-of-experts families: Mixtral, Qwen2-MoE, Qwen3-MoE and OLMoE.

The installed transformers builds each of their MLP blocks (``model.layers[i].mlp``,
a ``*SparseMoeBlock``) as a router (``mlp.gate``) and one fused experts module
(``mlp.experts``) whose parameters hold every expert at once: ``gate_up_proj``
[E, 2 x d_expert, d_model] and ``down_proj`` [E, d_model, d_expert], called as
``experts(hidden, top_k_index, top_k_weights)`` and dispatched to an experts
implementation (eager loop, grouped matmul, ...). There is no per-expert module to hook,
so nodeprune hooks the experts module itself (intervention.py): an expert's node value
is its router-weighted output for each token (0 where the router did not choose it),
its neurons the router-weighted hidden activations, the input of its slice of
``down_proj``. The router is not a node: a gated pass routes each token as the clean
prompt does, and the ablated contribution of an expert is what it gave on the
corrupted prompt under that prompt's own routing (its mean, or zero).

Qwen2-MoE adds a shared expert (a dense gated MLP at ``mlp.shared_expert``, scaled by
``sigmoid(mlp.shared_expert_gate(x))``). It is left to the MLP block: its hidden
neurons are the layer's ``mlp_neuron`` nodes (``d_mlp``), and the routed experts sit
beside them under the same MLP block.
"""

from __future__ import annotations

from torch import nn

from .base import ArchitectureAdapter, ModelDims, in_features, submodule


class MoEAdapter(ArchitectureAdapter):
    family = "moe"
    model_types = ("mixtral", "qwen3_moe", "olmoe")
    layers_path = "model.layers"
    attn_out_path = "self_attn.o_proj"
    mlp_down_path = ""  # no dense hidden layer: the experts are the whole MLP
    experts_path = "mlp.experts"
    notes = (
        "routed experts (fused expert weights) as nodes, each with its hidden neurons; "
        "top-k routing held at the clean prompt's; sliding window, QK norms"
    )

    def experts(self, layer: nn.Module) -> nn.Module:
        return submodule(layer, self.experts_path)

    def pattern(self, model: nn.Module | None = None) -> str:
        block = f"{self.layers_path}.{{i}}"
        hidden = f"{block}.{self.mlp_down_path}, " if self.mlp_down_path else ""
        return (
            f"{block}.{self.attn_out_path}, {hidden}{block}.{self.experts_path}, "
            f"{block}.{self.mlp_paths[-1]}"
        )

    def dims(self, model: nn.Module) -> ModelDims:
        dense = super().dims(model)
        layers = self.layers(model)
        n_experts, _, d_expert = self.experts(layers[0]).down_proj.shape
        d_mlp = in_features(self.mlp_down_proj(layers[0])) or 0
        return ModelDims(
            n_layers=dense.n_layers,
            n_heads=dense.n_heads,
            head_dim=dense.head_dim,
            d_model=dense.d_model,
            d_mlp=d_mlp,
            n_kv_heads=dense.n_kv_heads,
            n_experts=int(n_experts),
            d_expert=int(d_expert),
        )

    def problems(self, model: nn.Module) -> list[str]:
        try:
            layers = self.layers(model)
            experts = [
                submodule(layer, self.experts_path, f"{self.layers_path}.{i}")
                for i, layer in enumerate(layers)
            ]
        except AttributeError as exc:
            return [
                f"{exc} (every layer's MLP must be a mixture of experts: layers with a "
                "dense MLP between them are not supported yet)"
            ]
        out = []
        for i, module in enumerate(experts):
            weight = getattr(module, "down_proj", None)
            if getattr(weight, "dim", lambda: 0)() != 3:
                out.append(f"layer {i}'s {self.experts_path} has no fused down_proj [E, d, h]")
            elif getattr(module, "is_transposed", False) or getattr(module, "has_bias", False):
                out.append(
                    f"layer {i}'s {self.experts_path} stores transposed or biased expert "
                    "weights, which nodeprune does not gate yet"
                )
        return out or super().problems(model)


class Qwen2MoeAdapter(MoEAdapter):
    family = "qwen2_moe"
    model_types = ("qwen2_moe",)
    mlp_down_path = "mlp.shared_expert.down_proj"
    notes = (
        "routed experts as nodes; the shared expert's hidden neurons are the MLP "
        "neurons, its sigmoid gate and the router are not nodes"
    )
