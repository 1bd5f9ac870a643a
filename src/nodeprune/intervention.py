"""Hooks that record or gate the activations at nodeprune's sites, in place.

A *site* is one activation tensor that a family of gates acts on (the sites and the
granularities gated at each are in granularity.py: ``SITES``, ``Granularity.site``).
Gating mixes a site with its ablated value, ``a + m * (x - a)``, on the ordinary
forward pass: no copy of the residual stream is kept per node.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from .ablations import Ablated, Ablation, SiteKey, parse_ablation
from .errors import NodepruneError
from .gates import effective_gates
from .granularity import (
    AFFINE_AFTER,
    GRANULARITIES,
    SITES,
    site_granularities,
    site_granularity,
)
from .models import LoadedModel

__all__ = ["SITES", "Ablated", "GatedModel", "SiteKey", "mix_with_ablated", "site_plan"]


def site_plan(enabled: Iterable[str], ablation: Ablation | str) -> dict[str, tuple[str, bool]]:
    """For each site that gates anything: (the granularity whose gate it applies,
    whether that gate includes its ancestors' gates).

    Every gate must act exactly once on the way to the MLP output, or a gate at m
    would weigh its node by m**2 in training. Where one site is reached from another
    through an affine map (AFFINE_AFTER: the MLP output from the hidden neurons through
    the down projection), their common ancestors' gates (layer, MLP block) act at the
    upstream site when the ablation is affine-consistent (corrupted, mean: their effect
    reaches the output through the projection, whose ablated value they match), and the
    downstream site applies only its own gate, so it is idle unless that is enabled.
    Otherwise (zero ablation: a zeroed hidden layer still leaves the projection's bias)
    they act at the downstream site, and the upstream one applies only its own gate.
    """
    kind = parse_ablation(ablation)
    on = set(enabled)
    upstream_sites = set(AFFINE_AFTER.values())
    plan: dict[str, tuple[str, bool]] = {}
    for site in SITES:
        own = site_granularity(site)
        only_own = (site in AFFINE_AFTER and kind.affine_consistent) or (
            site in upstream_sites and not kind.affine_consistent
        )
        if only_own:
            if own in on:
                plan[site] = (own, False)
        elif on & set(site_granularities(site)):
            plan[site] = (own, True)
    return plan


def sites_for(granularities: Iterable[str], ablation: Ablation | str) -> tuple[str, ...]:
    """The sites that gate anything when ``granularities`` are enabled."""
    plan = site_plan(granularities, ablation)
    return tuple(s for s in SITES if s in plan)


def site_masks(
    own: dict[str, Tensor], effective: dict[str, Tensor], n_layers: int, ablation: Ablation
) -> dict[str, Tensor]:
    """Per-site masks [L, dim] (a granularity without layers: [1, dim]) for the sites
    that gate anything."""
    out = {}
    for site, (gran, with_ancestors) in site_plan(own, ablation).items():
        gate = effective[gran] if with_ancestors else own[gran]
        per_layer = GRANULARITIES[gran].per_layer
        out[site] = gate.reshape(n_layers if per_layer else 1, -1)
    return out


class _MixWithAblated(torch.autograd.Function):
    """``a + m * (x - a)``, saving only ``x - a`` and ``m`` for the backward pass.

    ``torch.lerp`` would save x, a and m. Saving the difference instead lets the
    corrupted activation ``a`` be freed as soon as its site has run (see
    ``GatedModel.gated_logits(release_ablated=True)``), and ``x`` too where nothing
    else keeps it (the MLP hidden product): one tensor per site instead of two.
    """

    @staticmethod
    def forward(ctx, x: Tensor, a: Tensor, m: Tensor) -> Tensor:  # type: ignore[override]
        diff = x - a
        ctx.save_for_backward(diff if ctx.needs_input_grad[2] else None, m)
        return torch.addcmul(a, diff, m)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, Tensor | None]:  # type: ignore[override]
        diff, m = ctx.saved_tensors
        grad_x = grad * m if ctx.needs_input_grad[0] else None
        grad_m = (grad * diff).sum_to_size(m.shape) if ctx.needs_input_grad[2] else None
        return grad_x, None, grad_m


def mix_with_ablated(x: Tensor, a: Tensor, m: Tensor) -> Tensor:
    """The gated value of a site: ``m * x + (1 - m) * a``."""
    if torch.is_grad_enabled() and (x.requires_grad or m.requires_grad):
        return _MixWithAblated.apply(x, a, m)
    return torch.lerp(a, x, m)


@dataclass
class GateState:
    """What the gating hooks read during one gated pass (for gradient-checkpoint replay)."""

    mode: str
    masks: dict[str, Tensor]
    ablated: Ablated | None
    release: bool


class GatedModel:
    """A frozen model with record/gate hooks on every site.

    ``granularities`` (default: all) are those it may gate; the ablator records only
    their sites, so gating any other granularity is an error.
    """

    def __init__(self, loaded: LoadedModel, granularities: Iterable[str] | None = None) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.adapter = loaded.adapter
        self.dims = loaded.dims
        self.granularities = tuple(GRANULARITIES if granularities is None else granularities)
        self._state_now = GateState("off", {}, None, False)
        self._record: dict[SiteKey, Tensor] = {}
        self._record_sites: set[str] = set(SITES)
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
        state = self._state_now
        if state.mode == "record":
            if key[0] in self._record_sites:
                x = x.detach()
                # A copy only where the block adds to the tensor in place afterwards
                # (Falcon's MLP output); elsewhere a reference costs no memory.
                in_place = key[0] in self.loaded.adapter.sites_modified_in_place
                self._record[key] = x.clone() if in_place else x
            return None
        if state.mode != "gate":
            return None
        site, layer = key
        masks = state.masks.get(site)
        if masks is None:
            return None  # no enabled granularity acts here
        # .to(device): with --device-map the layers live on different GPUs.
        m = masks[layer].to(device=x.device, dtype=x.dtype)
        assert state.ablated is not None
        a = state.ablated.get(key, release=state.release)
        if a is None:
            return x * m
        return mix_with_ablated(x, a.to(device=x.device, dtype=x.dtype), m)

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

    # -- state (gradient checkpointing replays it) ---------------------------------
    def snapshot(self) -> GateState:
        """The state the hooks read now; ``restore`` puts it back for a recompute."""
        return self._state_now

    def restore(self, state: GateState) -> None:
        self._state_now = state

    @contextmanager
    def _state(self, state: GateState) -> Iterator[None]:
        previous = self._state_now
        self._state_now = state
        try:
            yield
        finally:
            self._state_now = previous

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

    @torch.no_grad()
    def record(
        self, input_ids: Tensor, attention_mask: Tensor, sites: Iterable[str] | None = None
    ) -> dict[SiteKey, Tensor]:
        """Activations at the given sites (default: all) on an ungated forward pass."""
        self._record = {}
        self._record_sites = set(SITES if sites is None else sites)
        base = self.adapter.base_model(self.model)
        with self._state(GateState("record", {}, None, False)):
            base(input_ids=input_ids, attention_mask=attention_mask)
        out, self._record = self._record, {}
        return out

    def plain_logits(self, input_ids: Tensor, attention_mask: Tensor, answer_pos: Tensor) -> Tensor:
        with self._state(GateState("off", {}, None, False)):
            return self.answer_logits(input_ids, attention_mask, answer_pos)

    def gated_logits(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        answer_pos: Tensor,
        gates: dict[str, Tensor],
        ablated: Ablated,
        release_ablated: bool = False,
    ) -> Tensor:
        """Logits with every node mixed by its effective gate (own x ancestors').

        ``release_ablated`` frees each per-batch ablated activation as soon as its site
        has used it, so the corrupted pass's activations never all coexist with the
        clean pass's saved ones; ``ablated`` cannot be used again afterwards. It is
        ignored while gradient checkpointing is on (the recompute needs them again).
        """
        unknown = [g for g in gates if g not in self.granularities]
        if unknown:
            raise NodepruneError(
                f"gates for {', '.join(unknown)}, but this GatedModel records the sites of "
                f"{', '.join(self.granularities)} only; build it with those granularities"
            )
        like = next(iter(gates.values())) if gates else torch.ones(1)
        effective = effective_gates(gates, self.dims, like)
        masks = site_masks(gates, effective, self.dims.n_layers, ablated.ablation)
        release = release_ablated and ablated.per_batch and not self.checkpointing()
        with self._state(GateState("gate", masks, ablated, release)):
            return self.answer_logits(input_ids, attention_mask, answer_pos)

    def checkpointing(self) -> bool:
        """Whether any layer recomputes its forward pass in the backward pass."""
        return any(
            getattr(m, "gradient_checkpointing", False) and m.training
            for m in self.adapter.layers(self.model)
        )
