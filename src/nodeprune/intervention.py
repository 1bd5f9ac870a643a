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
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .ablations import Ablated, Ablation, SiteKey, parse_ablation
from .errors import NodepruneError
from .gates import effective_gates
from .granularity import (
    AFFINE_AFTER,
    GRANULARITIES,
    SITES,
    ancestors,
    granularities_for_model,
    site_granularity,
)
from .models import LoadedModel
from .routed_experts import gated_experts_output, routed_hidden

if TYPE_CHECKING:
    from .architectures.base import ModelDims

__all__ = ["SITES", "Ablated", "GatedModel", "SiteKey", "mix_with_ablated", "site_plan"]


def site_plan(
    enabled: Iterable[str], ablation: Ablation | str, moe: bool = False
) -> dict[str, tuple[str, tuple[str, ...]]]:
    """For each site that gates anything: (the granularity whose gate it applies, the
    granularities whose own gates multiply there: it and some of its ancestors).

    Every gate must act exactly once on the way to the MLP output, or a gate at m
    would weigh its node by m**2 in training. Where one site is reached from another
    through an affine map (AFFINE_AFTER: the MLP output from the hidden neurons through
    the down projection), their common ancestors' gates (layer, MLP block) act at the
    upstream site when the ablation is affine-consistent (corrupted, mean: their effect
    reaches the output through the projection, whose ablated value they match), and the
    downstream site applies only its own gate, so it is idle unless that is enabled.
    Otherwise (zero ablation: a zeroed hidden layer still leaves the projection's bias)
    they act at the downstream site, and the upstream one applies only its own gate.

    In a mixture-of-experts model (``moe``) the MLP block's output is the one site that
    every path through it crosses (routed experts, and Qwen2-MoE's shared expert, whose
    sigmoid gate reads the clean input, so no upstream value is consistent with the
    block's ablated output): the layer and MLP-block gates act there under every
    ablation, the experts' and their neurons' gates at the experts' hidden
    activations, and the shared expert's neurons' at its own.
    """
    kind = parse_ablation(ablation)
    on = set(enabled)
    upstream_sites = set(AFFINE_AFTER.values())
    plan: dict[str, tuple[str, tuple[str, ...]]] = {}
    for site in SITES:
        own = site_granularity(site)
        chain = (own, *ancestors(own))
        if moe:
            if site in upstream_sites:
                chain = (own,)
            elif site == "expert_hidden":
                chain = chain[: chain.index("mlp_block")]
        else:
            if site == "expert_hidden":
                continue  # a dense model has no experts
            only_own = (site in AFFINE_AFTER and kind.affine_consistent) or (
                site in upstream_sites and not kind.affine_consistent
            )
            if only_own:
                chain = (own,)
        if on & set(chain):
            plan[site] = (own, chain)
    return plan


def sites_for(
    granularities: Iterable[str], ablation: Ablation | str, moe: bool = False
) -> tuple[str, ...]:
    """The sites that gate anything when ``granularities`` are enabled."""
    plan = site_plan(granularities, ablation, moe)
    return tuple(s for s in SITES if s in plan)


def site_masks(
    own: dict[str, Tensor], dims: ModelDims, ablation: Ablation, like: Tensor
) -> dict[str, Tensor]:
    """Per-site masks [L, dim] (a granularity without layers: [1, dim]) for the sites
    that gate anything: the product of the gates that act there, broadcast."""
    out = {}
    for site, (gran, chain) in site_plan(own, ablation, dims.n_experts > 0).items():
        acting = {g: own[g] for g in chain if g in own}
        gate = effective_gates(acting, dims, like, upto=gran)[gran]
        per_layer = GRANULARITIES[gran].per_layer
        out[site] = gate.reshape(dims.n_layers if per_layer else 1, -1)
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
        wanted = GRANULARITIES if granularities is None else granularities
        self.granularities = tuple(granularities_for_model(wanted, self.dims))
        self._state_now = GateState("off", {}, None, False)
        self._record: dict[SiteKey, Tensor] = {}
        self._record_sites: set[str] = set(SITES)
        self._handles = []
        self._inside_experts = False
        #: (batch, tokens) of the pass running now: the experts module sees its tokens
        #: flattened, and what it records is stored per token like every other site.
        self._batch_shape: tuple[int, int] = (0, 0)
        self._install()

    # -- hooks -----------------------------------------------------------------
    def _install(self) -> None:
        a, m = self.adapter, self.model
        self._handles.append(a.embedding(m).register_forward_hook(self._output_hook(("embed", 0))))
        for i, layer in enumerate(a.layers(m)):
            self._handles.append(
                a.attn_out_proj(layer).register_forward_pre_hook(self._input_hook(("attn_z", i)))
            )
            down = a.mlp_down_proj(layer)
            if down is not None:
                self._handles.append(
                    down.register_forward_pre_hook(self._input_hook(("mlp_hidden", i)))
                )
            experts = a.experts(layer)
            if experts is not None:
                self._handles.append(
                    experts.register_forward_hook(self._experts_hook(("expert_hidden", i)))
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
                x = x.clone() if in_place else x
                # Stored per token: a module that sees the tokens flattened [B * T, dim]
                # (Qwen2-MoE's shared expert) is recorded as [B, T, dim] like the others.
                self._record[key] = x.reshape(*self._batch_shape, -1) if x.dim() == 2 else x
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
        if x.dim() == 2 and a.dim() == 3:  # flattened tokens (see the recording above)
            a = a.reshape(x.shape)
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

    def _experts_hook(self, key: SiteKey):
        """The fused routed-experts module (routed_experts.py): records each expert's
        router-weighted hidden activations, or recomputes its output with each expert's
        neurons mixed with their ablated values."""

        def hook(module, args, output):
            state = self._state_now
            if self._inside_experts or state.mode not in ("record", "gate"):
                return None
            hidden, top_k_index, top_k_weights = args[:3]
            self._inside_experts = True  # the recomputations call the module again
            try:
                if state.mode == "record":
                    if key[0] in self._record_sites:
                        routed = routed_hidden(module, hidden, top_k_index, top_k_weights)
                        self._record[key] = routed.reshape(*self._batch_shape, -1)
                    return None
                masks = state.masks.get(key[0])
                if masks is None:
                    return None
                m = masks[key[1]].to(device=output.device, dtype=output.dtype)
                assert state.ablated is not None
                a = state.ablated.get(key, release=state.release)
                if a is not None:
                    a = a.to(device=output.device, dtype=output.dtype)
                return gated_experts_output(module, hidden, top_k_index, top_k_weights, m, a)
            finally:
                self._inside_experts = False

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
        self._batch_shape = tuple(input_ids.shape)
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
        self._batch_shape = tuple(input_ids.shape)
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
        masks = site_masks(gates, self.dims, ablated.ablation, like)
        release = release_ablated and ablated.per_batch and not self.checkpointing()
        with self._state(GateState("gate", masks, ablated, release)):
            return self.answer_logits(input_ids, attention_mask, answer_pos)

    def checkpointing(self) -> bool:
        """Whether any layer recomputes its forward pass in the backward pass."""
        return any(
            getattr(m, "gradient_checkpointing", False) and m.training
            for m in self.adapter.layers(self.model)
        )
