"""Hooks that record or gate the activations at nodeprune's sites, in place.

A *site* is one activation tensor that a family of gates acts on:

* ``embed``      token-embedding output              [B, T, d_model]
* ``attn_z``     input of the attention output proj  [B, T, n_heads * head_dim]
* ``mlp_hidden`` input of the MLP down projection    [B, T, d_mlp]
* ``mlp_out``    output of the MLP block             [B, T, d_model]

Gating mixes a site with its ablated value, ``a + m * (x - a)``, on the ordinary
forward pass: no copy of the residual stream is kept per node.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from .gates import effective_gates
from .models import LoadedModel

SITES = ("embed", "attn_z", "mlp_hidden", "mlp_out")
#: The granularity whose effective gate each site applies (it already contains
#: the product with every ancestor's gate).
SITE_GRANULARITY = {
    "embed": "embedding",
    "attn_z": "attention_neuron",
    "mlp_hidden": "mlp_neuron",
    "mlp_out": "mlp_output",
}
SiteKey = tuple[str, int]  # (site, layer); the embedding is layer 0


def site_masks(effective: dict[str, Tensor], n_layers: int) -> dict[str, Tensor]:
    """Per-site masks [L, dim] (the embedding: [1, 1]) from effective gates."""
    out = {}
    for site, gran in SITE_GRANULARITY.items():
        gate = effective[gran]
        out[site] = gate.reshape(1, 1) if site == "embed" else gate.reshape(n_layers, -1)
    return out


@dataclass
class Ablated:
    """What a pruned site takes: per-example activations [B, T, dim], a mean [dim],
    or nothing (zero)."""

    values: dict[SiteKey, Tensor]
    kind: str  # "corrupted" | "mean" | "zero"

    def get(self, key: SiteKey) -> Tensor | None:
        return self.values.get(key)


class GatedModel:
    """A frozen model with record/gate hooks on every site."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.adapter = loaded.adapter
        self.dims = loaded.dims
        self._mode = "off"
        self._record: dict[SiteKey, Tensor] = {}
        self._record_sites: set[str] = set(SITES)
        self._masks: dict[str, Tensor] = {}
        self._ablated: Ablated | None = None
        self._handles = []
        self._install()

    # -- hooks -----------------------------------------------------------------
    def _install(self) -> None:
        a, m = self.adapter, self.model
        self._handles.append(a.embedding(m).register_forward_hook(self._output_hook(("embed", 0))))
        for i, layer in enumerate(a.layers(m)):
            self._handles.append(
                a.attn_out_proj(layer).register_forward_pre_hook(self._input_hook(("attn_z", i)))
            )
            self._handles.append(
                a.mlp_down_proj(layer).register_forward_pre_hook(
                    self._input_hook(("mlp_hidden", i))
                )
            )
            self._handles.append(
                a.mlp(layer).register_forward_hook(self._output_hook(("mlp_out", i)))
            )

    def _apply(self, key: SiteKey, x: Tensor) -> Tensor | None:
        if self._mode == "record":
            if key[0] in self._record_sites:
                self._record[key] = x.detach()
            return None
        if self._mode != "gate":
            return None
        site, layer = key
        # .to(device): with --device-map the layers live on different GPUs.
        m = self._masks[site][layer].to(device=x.device, dtype=x.dtype)
        assert self._ablated is not None
        a = self._ablated.get(key)
        if a is None:
            return x * m
        # lerp(a, x, m) = a + m * (x - a) in one kernel; for backward it keeps only
        # references to x, a and m, where the spelled-out form would keep (x - a) too.
        return torch.lerp(a.to(x.dtype), x, m)

    def _input_hook(self, key: SiteKey):
        def hook(module, args):
            out = self._apply(key, args[0])
            return None if out is None else (out, *args[1:])

        return hook

    def _output_hook(self, key: SiteKey):
        def hook(module, args, output):
            if isinstance(output, tuple):
                out = self._apply(key, output[0])
                return None if out is None else (out, *output[1:])
            return self._apply(key, output)

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    # -- forward passes -------------------------------------------------------------
    def answer_logits(
        self, input_ids: Tensor, attention_mask: Tensor, answer_pos: Tensor
    ) -> Tensor:
        """Logits [B, V] at each example's answer position; the LM head runs only there."""
        base = self.adapter.base_model(self.model)
        hidden = base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        picked = hidden[rows, answer_pos.to(hidden.device)]
        return self.adapter.lm_head(self.model)(picked).float().to(input_ids.device)

    @contextmanager
    def _state(self, mode: str) -> Iterator[None]:
        previous = self._mode
        self._mode = mode
        try:
            yield
        finally:
            self._mode = previous

    @torch.no_grad()
    def record(
        self, input_ids: Tensor, attention_mask: Tensor, sites: tuple[str, ...] = SITES
    ) -> dict[SiteKey, Tensor]:
        """Activations at the given sites on an ungated forward pass."""
        self._record = {}
        self._record_sites = set(sites)
        base = self.adapter.base_model(self.model)
        with self._state("record"):
            base(input_ids=input_ids, attention_mask=attention_mask)
        out, self._record = self._record, {}
        return out

    def plain_logits(self, input_ids: Tensor, attention_mask: Tensor, answer_pos: Tensor) -> Tensor:
        with self._state("off"):
            return self.answer_logits(input_ids, attention_mask, answer_pos)

    def gated_logits(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        answer_pos: Tensor,
        gates: dict[str, Tensor],
        ablated: Ablated,
    ) -> Tensor:
        """Logits with every node mixed by its effective gate (own x ancestors')."""
        like = next(iter(gates.values())) if gates else torch.ones(1)
        effective = effective_gates(gates, self.dims, like)
        self._masks = site_masks(effective, self.dims.n_layers)
        self._ablated = ablated
        try:
            with self._state("gate"):
                return self.answer_logits(input_ids, attention_mask, answer_pos)
        finally:
            self._masks, self._ablated = {}, None
