"""The edge-gated forward pass, on hooks over stock modules.

The input of a downstream node d is the residual stream at its place minus, for each
candidate upstream node u with edge gate m_ud, ``(1 - m_ud) * (out_u - abl_u)``: out_u is
u's output on this pass, abl_u its ablated output (its corrupted, mean or zero value),
so a closed edge makes d read u's ablated output and everything else unchanged. Node
gates (the node circuit's masks) act as in node discovery, through the GatedModel's
hooks, which run before these.

An MLP block and the logits read one input each: a pre-hook on the norm in front of
them replaces its input. Heads need one input each (and one per query, key and value):
a forward hook on the query/key/value projection replaces the kept heads' slices of its
output with the projection of their own normed inputs (the stock norm's ``forward`` on
``[rows, B, T, d_model]``, the projection's weight rows of the head); rotary embeddings,
the attention itself and the output projection then run as the stock module has them.
With every edge open each correction is exactly zero, and the pass is the node
circuit's (tests/architectures/test_edge_conformance.py). In a parallel block the MLP's
input is the layer's input minus its corrections (its upstream prefix stops before the
layer's heads); under a norm shared with the attention it is that norm's ``forward`` of
them, at the MLP's input.

Under a norm on the attention's output (Gemma 2/3, GLM-4, OLMo 2/3) the heads' writes
are not a sum over heads: a downstream input's correction for a layer's heads is the
layer's attention output minus ``norm(o_proj(z'))``, with ``z'`` the output projection's
input with the closed fraction of each head's slice moved to its ablated value, on the
stock norm and projection (``_NormedHeads``). It costs one output projection per
downstream input and upstream layer, so those families' edge pass is slower.

Memory: one ``[n, B, T, d_model]`` difference per group of candidate upstream nodes (the
embedding; a layer's kept heads; a layer's MLP), so it grows with the surviving nodes,
not with the model's. The heads' own ``[rows, B, T, d_model]`` inputs (and their norm's
intermediates) are recomputed in the backward pass instead of kept (``recompute``), so
only their ``[rows, B, T, head_dim]`` projections stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..errors import NodepruneError
from ..intervention import Ablated, GatedModel
from .graph import EdgeGraph, Group
from .layout import EdgeLayout, block_module, edge_layout, linear_weight


@dataclass
class _NormedHeads:
    """A layer's kept heads under a norm on the attention's output (Gemma 2/3, GLM-4,
    OLMo 2/3): what they add to the residual stream is ``norm(o_proj(z))``, not a sum
    over heads, so a downstream row that closes edges from some of them reads
    ``norm(o_proj(z with those heads' slices ablated))`` in place of the layer's
    attention output: each row's correction is recomputed through the stock modules."""

    z: Tensor  # [B, T, H * hd], the output projection's (node-gated) input
    diff: Tensor  # [n, B, T, hd], z - ablated z of each kept head
    heads: Tensor  # [n], their indices
    out_proj: nn.Module
    post_norm: nn.Module
    attn_out: Tensor  # [B, T, D], what the layer's attention added

    @property
    def n(self) -> int:
        return self.diff.shape[0]

    def correction(self, closed: Tensor) -> Tensor:
        """``closed`` [rows, n] -> [rows, B, T, D]."""
        batch, seq, width = self.z.shape
        hd = self.diff.shape[-1]
        moved = torch.einsum("rn,nbte->rbtne", closed.to(self.diff.dtype), self.diff)
        delta = torch.zeros(
            (closed.shape[0], batch, seq, width // hd, hd), dtype=moved.dtype, device=moved.device
        ).index_add(3, self.heads, moved)
        mixed = (self.z.view(1, batch, seq, -1, hd) - delta).flatten(3)
        return self.attn_out.unsqueeze(0) - self.post_norm.forward(self.out_proj.forward(mixed))


@dataclass
class _PassState:
    """What the hooks read and write during one edge-gated pass."""

    closed: dict[str, Tensor]  # group name -> 1 - m, [rows, prefix]
    ablated: Ablated
    #: (first upstream index, [n, B, T, D] out - ablated, or a layer's heads under a
    #: norm on the attention's output), in upstream order.
    blocks: list[tuple[int, Tensor | _NormedHeads]] = field(default_factory=list)
    residual: dict[int, Tensor] = field(default_factory=dict)


def _identity(x: Tensor) -> Tensor:
    return x


class EdgeModel:
    """Edge hooks over a GatedModel (whose hooks must already be on the model)."""

    def __init__(self, gated: GatedModel, graph: EdgeGraph, recompute: bool = True) -> None:
        self.gated = gated
        #: Recompute the heads' own inputs in the backward pass (see _qkv_hook).
        self.recompute = recompute
        self.graph = graph
        self.model = gated.model
        self.layout: EdgeLayout = edge_layout(self.model)
        if graph.parallel != self.layout.parallel:
            raise NodepruneError(
                f"this edge graph was built for {'parallel' if graph.parallel else 'sequential'} "
                "blocks and the model's are not; build it with parallel=edge_layout(model).parallel"
            )
        dims = gated.dims
        self.head_dim = dims.head_dim
        self._first = {}  # (kind, layer) -> first upstream index of its block
        self._heads: dict[int, list[int]] = {}
        for i, u in enumerate(graph.upstream):
            self._first.setdefault((u.kind, u.layer), i)
            if u.kind == "head":
                self._heads.setdefault(u.layer, []).append(int(u.head))
        self._state: _PassState | None = None
        self._handles: list = []
        try:
            self._install()
        except AttributeError as exc:
            self.remove()
            raise NodepruneError(f"the edge phase cannot hook this model: {exc}") from exc

    # -- hooks ------------------------------------------------------------------------
    def _install(self) -> None:
        adapter, model, lay = self.gated.adapter, self.model, self.layout
        hooks = self._handles
        hooks.append(adapter.embedding(model).register_forward_hook(self._embed_hook))
        for layer, block in enumerate(adapter.layers(model)):
            if lay.fused:
                parts = {block_module(block, lay.fused): ("q", "k", "v")}
            else:
                parts = {block_module(block, getattr(lay, f"{p}_proj")): (p,) for p in "qkv"}
            if lay.attn_norm:
                attn_norm = block_module(block, lay.attn_norm)
                hooks.append(attn_norm.register_forward_pre_hook(self._capture(layer)))
                normalize = attn_norm.forward
            else:  # the projections read the residual stream itself
                for proj in parts:
                    hooks.append(proj.register_forward_pre_hook(self._capture(layer)))
                normalize = _identity
            for proj, names in parts.items():
                hooks.append(proj.register_forward_hook(self._qkv_hook(layer, normalize, names)))
            out_proj = adapter.attn_out_proj(block)
            post_norm = block_module(block, lay.attn_post_norm) if lay.attn_post_norm else None
            hooks.append(
                out_proj.register_forward_pre_hook(self._heads_hook(layer, out_proj, post_norm))
            )
            if lay.shared_norm:  # the norm's output is the attention's: recompute at the MLP
                mlp_in = block_module(block, lay.mlp_input)
                hooks.append(mlp_in.register_forward_pre_hook(self._renorm_hook(layer, attn_norm)))
            else:  # the MLP's own norm, or the MLP itself where it reads the residual stream
                mlp_norm = block_module(block, lay.mlp_norm or lay.mlp_input)
                hooks.append(mlp_norm.register_forward_pre_hook(self._read_hook("mlp", layer)))
            hooks.append(adapter.mlp(block).register_forward_hook(self._mlp_hook(layer)))
        final = block_module(model, lay.final_norm)
        n_layers = self.gated.dims.n_layers
        hooks.append(final.register_forward_pre_hook(self._read_hook("logits", n_layers)))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _ablated(self, site: str, layer: int, like: Tensor) -> Tensor:
        assert self._state is not None
        value = self._state.ablated.get((site, layer))
        if value is None:  # zero ablation
            return torch.zeros((), dtype=like.dtype, device=like.device)
        return value.to(device=like.device, dtype=like.dtype)

    def _embed_hook(self, module, args, output):
        state = self._state
        if state is None or ("embed", -1) not in self._first:
            return None
        out = output[0] if isinstance(output, tuple) else output
        diff = out - self._ablated("embed", 0, out)
        state.blocks.append((self._first[("embed", -1)], diff.unsqueeze(0)))
        return None

    def _capture(self, layer: int):
        def hook(module, args):
            if self._state is not None:
                self._state.residual[layer] = args[0]

        return hook

    def _heads_hook(self, layer: int, out_proj, post_norm):
        def hook(module, args):
            state = self._state
            heads = self._heads.get(layer)
            if state is None or not heads:
                return None
            z = args[0]
            diff = z - self._ablated("attn_z", layer, z)
            batch, seq = diff.shape[:2]
            idx = torch.tensor(heads, device=z.device)
            diff = diff.view(batch, seq, -1, self.head_dim).index_select(2, idx)
            if post_norm is not None:
                attn_out = post_norm.forward(out_proj.forward(z))
                normed = _NormedHeads(
                    z, diff.permute(2, 0, 1, 3), idx, out_proj, post_norm, attn_out
                )
                state.blocks.append((self._first[("head", layer)], normed))
                return None
            weight, _ = linear_weight(out_proj)  # [d_model, n_heads * head_dim]
            w = weight.view(weight.shape[0], -1, self.head_dim).index_select(1, idx)
            per_head = torch.einsum("bthe,dhe->hbtd", diff, w)
            state.blocks.append((self._first[("head", layer)], per_head))
            return None

        return hook

    def _mlp_hook(self, layer: int):
        def hook(module, args, output):
            state = self._state
            if state is None or ("mlp", layer) not in self._first:
                return None
            out = output[0] if isinstance(output, tuple) else output
            diff = out - self._ablated("mlp_out", layer, out)
            state.blocks.append((self._first[("mlp", layer)], diff.unsqueeze(0)))
            return None

        return hook

    def _correction(
        self,
        group: Group,
        device: torch.device,
        state: _PassState | None = None,
        rows: Tensor | None = None,
    ) -> Tensor | None:
        """sum_u (1 - m_ud) (out_u - abl_u) per row of ``group`` (or per row of ``rows``
        only): [rows, B, T, D], on ``device`` (with a device map, upstream layers may live
        elsewhere). ``state``: the pass's (default: the current pass)."""
        state = self._state if state is None else state
        assert state is not None
        closed = state.closed[group.name].to(device)
        if rows is not None:
            closed = closed.index_select(0, rows.to(device))
        total = None
        for start, item in state.blocks:
            if start >= group.n_upstream:
                break
            if isinstance(item, _NormedHeads):
                block = closed[:, start : start + item.n].to(item.z.device)
                part = item.correction(block).to(device)
            else:
                block = closed[:, start : start + item.shape[0]]
                part = torch.einsum("rn,nbtd->rbtd", block.to(item.dtype), item.to(device))
            total = part if total is None else total + part
        return total

    def _read_hook(self, kind: str, layer: int):
        def hook(module, args):
            state = self._state
            group = self.graph.group(kind, layer)
            if state is None or group is None:
                return None
            correction = self._correction(group, args[0].device)
            if correction is None:
                return None
            return (args[0] - correction[0].to(args[0].dtype), *args[1:])

        return hook

    def _renorm_hook(self, layer: int, norm):
        """The MLP's input under a norm it shares with the attention: the norm of the
        layer's input residual stream minus the MLP's corrections."""

        def hook(module, args):
            state = self._state
            group = self.graph.group("mlp", layer)
            if state is None or group is None:
                return None
            residual = state.residual[layer]
            correction = self._correction(group, residual.device)
            if correction is None:
                return None
            normed = norm.forward(residual - correction[0].to(residual.dtype))
            return (normed.to(args[0].dtype), *args[1:])

        return hook

    def _qkv_hook(self, layer: int, normalize, names: tuple[str, ...]):
        def hook(module, args, output):
            state = self._state
            group = self.graph.group("attn", layer)
            if state is None or group is None:
                return None
            rows = [i for i, r in enumerate(group.rows) if r.part in names]
            if not rows or all(start >= group.n_upstream for start, _ in state.blocks):
                return None  # no upstream candidate yet: the stock projection stands
            residual = state.residual[layer]
            picked = torch.tensor(rows, device=residual.device)
            weight, bias = linear_weight(module)
            hd = self.head_dim
            w_units = weight.view(-1, hd, weight.shape[1])  # per head of the output
            b_units = None if bias is None else bias.view(-1, hd)
            dims = self.gated.dims
            units = [
                self.layout.fused_unit(r.part, r.index, dims.n_heads, dims.n_kv_heads)
                if len(names) > 1
                else r.index
                for r in (group.rows[i] for i in rows)
            ]
            unit_idx = torch.tensor(units, device=residual.device)
            w = w_units.index_select(0, unit_idx)
            b = None if b_units is None else b_units.index_select(0, unit_idx)[:, None, None, :]

            def head_inputs(residual: Tensor) -> Tensor:
                """Each picked row's own normed input, projected: [rows, B, T, hd]."""
                correction = self._correction(group, residual.device, state, picked)
                assert correction is not None
                inputs = normalize(residual.unsqueeze(0) - correction)
                new = torch.einsum("rbtd,red->rbte", inputs.to(w.dtype), w)
                return new if b is None else new + b

            if self.recompute and torch.is_grad_enabled():
                # The rows' [rows, B, T, d_model] inputs and their norm's intermediates
                # (one per kept head and key/value head of every layer) are recomputed in
                # the backward pass instead of kept, so only the [rows, B, T, head_dim]
                # projections stay: a sixth less memory above the model on the SmolLM2
                # shape (bench/edges.py), for a sixth more time. The recompute reads
                # ``state``, the forward's own (not the pass current then).
                new = checkpoint(head_inputs, residual, use_reentrant=False)
            else:
                new = head_inputs(residual)
            batch, seq = output.shape[:2]
            out = output.clone()
            out.view(batch, seq, -1, hd)[:, :, unit_idx] = new.permute(1, 2, 0, 3).to(out.dtype)
            return out

        return hook

    # -- the pass -----------------------------------------------------------------------
    def edge_logits(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        answer_pos: Tensor,
        node_gates: dict[str, Tensor],
        edge_gates: dict[str, Tensor],
        ablated: Ablated,
    ) -> Tensor:
        """Answer-position logits with the node gates and the per-group edge gates
        (``EdgeGraph.split`` of one value per edge; 1 open, 0 closed)."""
        if self.gated.checkpointing():
            raise NodepruneError(
                "the edge phase does not support gradient checkpointing yet; run it without"
            )
        closed = {name: 1 - m for name, m in edge_gates.items()}
        self._state = _PassState(closed, ablated)
        try:
            return self.gated.gated_logits(
                input_ids, attention_mask, answer_pos, gates=node_gates, ablated=ablated
            )
        finally:
            self._state = None

    def __enter__(self) -> EdgeModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
