"""The edge phase's forward pass on every family it supports: with every edge open it is
the stock model (and the node circuit), and closing one edge gives what path patching
that edge by hand gives (plain hooks on the stock modules, a corrupted pass then a clean
one). Families it does not support are refused with one line."""

from __future__ import annotations

import pytest
import torch
from tiny_models import ROWS, build

from nodeprune.ablations import ABLATIONS, Ablated
from nodeprune.edges import EDGE_LAYOUTS, EdgeGraph, EdgeModel
from nodeprune.errors import NodepruneError
from nodeprune.intervention import GatedModel

SUPPORTED = [r for r in ROWS if r.model_type in EDGE_LAYOUTS]
B, T = 3, 7


def test_every_supported_type_has_a_row():
    assert {r.model_type for r in SUPPORTED} == set(EDGE_LAYOUTS)


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(1, 500, (B, T), generator=g)
    corrupted = clean.clone()
    # The answer position too, so that an edge from the embedding to the logits matters.
    corrupted[:, 2:] = torch.randint(1, 500, (B, T - 2), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    pos = torch.full((B,), T - 1)
    return clean, corrupted, mask, pos


def _setup(row, tokenizer):
    loaded = build(row, tokenizer)
    gated = GatedModel(loaded)
    clean, corrupted, mask, pos = _batch()
    ablated = Ablated(gated.record(corrupted, mask), ABLATIONS["corrupted"], per_batch=True)
    return loaded, gated, (clean, mask, pos), corrupted, ablated


def _open(graph: EdgeGraph) -> dict[str, torch.Tensor]:
    return graph.split(torch.ones(graph.n_edges))


def _node_masks(dims, seed: int = 1) -> dict[str, torch.Tensor]:
    """A node circuit: some heads, an MLP and some MLP neurons pruned."""
    g = torch.Generator().manual_seed(seed)
    heads = (torch.rand(dims.n_layers, dims.n_heads, generator=g) > 0.4).float()
    heads[0, 0] = heads[1, 1] = 1.0
    mlps = torch.ones(dims.n_layers)
    neurons = (torch.rand(dims.n_layers, dims.d_mlp, generator=g) > 0.3).float()
    return {"attention_head": heads, "mlp_block": mlps, "mlp_neuron": neurons}


@pytest.mark.parametrize("row", SUPPORTED, ids=lambda r: r.id)
def test_all_edges_open_is_the_stock_model_and_the_node_circuit(row, tokenizer):
    loaded, gated, args, _, ablated = _setup(row, tokenizer)
    dims = loaded.dims
    with torch.no_grad():
        plain = gated.plain_logits(*args)
        graph = EdgeGraph.full(dims)
        with EdgeModel(gated, graph) as edges:
            opened = edges.edge_logits(*args, {}, _open(graph), ablated)
        torch.testing.assert_close(opened, plain, atol=1e-5, rtol=1e-5)

        nodes = _node_masks(dims)
        node_circuit = gated.gated_logits(*args, gates=nodes, ablated=ablated)
        kept = {
            "embedding": torch.ones(1),
            "attention_head": nodes["attention_head"],
            "mlp_block": nodes["mlp_block"],
        }
        graph = EdgeGraph(dims, kept)
        assert graph.n_edges < EdgeGraph.full(dims).n_edges
        with EdgeModel(gated, graph) as edges:
            opened = edges.edge_logits(*args, nodes, _open(graph), ablated)
        torch.testing.assert_close(opened, node_circuit, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(node_circuit, plain, atol=1e-3)


def _module(model, path: str, layer: int | None = None):
    return model.get_submodule(path.format(i=layer) if layer is not None else path)


class _HandPatch:
    """Path patching of one edge with plain hooks on the stock modules (paths from the
    modeling files): record u's output on the corrupted prompt, then on the clean run
    give d the input ``clean_input - (out_u_clean - out_u_corrupted)``."""

    def __init__(self, row, model, dims):
        self.row, self.model, self.dims = row, model, dims
        self.fam = "gpt2" if row.model_type == "gpt2" else "llama"

    def _u_output(self, upstream):
        """A hook recording u's output into the residual stream, and where it goes."""
        store = {}
        if upstream.kind == "embed":
            mod = _module(self.model, self.row.embed)

            def hook(m, a, out):
                store["out"] = out

            return mod.register_forward_hook(hook), store
        if upstream.kind == "mlp":
            mod = _module(self.model, self.row.mlp, upstream.layer)

            def hook(m, a, out):
                store["out"] = out

            return mod.register_forward_hook(hook), store
        mod = _module(self.model, self.row.attn_z, upstream.layer)
        hd, h = self.dims.head_dim, upstream.head

        def pre(m, args):
            z = args[0][..., h * hd : (h + 1) * hd]
            weight = m.weight.t() if self.fam == "gpt2" else m.weight  # [d_model, in]
            store["out"] = z @ weight[:, h * hd : (h + 1) * hd].t()

        return mod.register_forward_pre_hook(pre), store

    def run(self, upstream, group, row, clean, corrupted, mask, kind="corrupted"):
        """``kind``: corrupted (u's output on the corrupted prompt), mean (its mean over
        the positions of the clean prompts) or zero."""
        handle, store = self._u_output(upstream)
        with torch.no_grad():
            self.model(input_ids=clean if kind == "mean" else corrupted, attention_mask=mask)
        corrupted_out = {
            "corrupted": store["out"],
            "mean": store["out"].mean(dim=(0, 1)),
            "zero": torch.zeros_like(store["out"]),
        }[kind]
        handles = [handle]
        patch = {}

        def delta():
            return store["out"] - corrupted_out

        if group.kind in ("mlp", "logits"):
            path = {
                ("gpt2", "mlp"): "transformer.h.{i}.ln_2",
                ("llama", "mlp"): "model.layers.{i}.post_attention_layernorm",
                ("gpt2", "logits"): "transformer.ln_f",
                ("llama", "logits"): "model.norm",
            }[(self.fam, group.kind)]
            norm = _module(self.model, path, group.layer)
            handles.append(norm.register_forward_pre_hook(lambda m, a: (a[0] - delta(), *a[1:])))
        else:
            norm_path = (
                "transformer.h.{i}.ln_1"
                if self.fam == "gpt2"
                else "model.layers.{i}.input_layernorm"
            )
            norm = _module(self.model, norm_path, group.layer)
            handles.append(
                norm.register_forward_pre_hook(lambda m, a: patch.__setitem__("r", a[0]))
            )
            hd, width = self.dims.head_dim, self.dims.n_heads * self.dims.head_dim
            if self.fam == "gpt2":
                proj = _module(self.model, "transformer.h.{i}.attn.c_attn", group.layer)
                start = "qkv".index(row.part) * width + row.index * hd
            else:
                path = f"model.layers.{{i}}.self_attn.{row.part}_proj"
                proj = _module(self.model, path, group.layer)
                start = row.index * hd

            def proj_hook(m, a, out):
                patched = m.forward(norm.forward(patch["r"] - delta()))
                out = out.clone()
                out[..., start : start + hd] = patched[..., start : start + hd]
                return out

            handles.append(proj.register_forward_hook(proj_hook))
        try:
            with torch.no_grad():
                out = self.model(input_ids=clean, attention_mask=mask).logits
        finally:
            for h in handles:
                h.remove()
        return out


@pytest.mark.parametrize("row", SUPPORTED, ids=lambda r: r.id)
def test_closing_one_edge_is_path_patching_it(row, tokenizer):
    loaded, gated, (clean, mask, pos), corrupted, ablated = _setup(row, tokenizer)
    dims = loaded.dims
    graph = EdgeGraph.full(dims)
    hand = _HandPatch(row, loaded.model, dims)
    ups = {u.name: i for i, u in enumerate(graph.upstream)}
    last = dims.n_layers - 1
    # (upstream, group kind, group layer, row part, row index): every kind of edge.
    cases = [
        ("input", "attn", 0, "q", 1),
        ("input", "attn", last, "k", 0),
        (f"a0.h{dims.n_heads - 1}", "attn", last, "v", 1 % dims.n_kv_heads),
        ("a0.h2", "attn", last, "q", 3),
        (f"a{last}.h1", "mlp", last, "", 0),
        ("m0", "attn", last, "k", dims.n_kv_heads - 1),
        ("m0", "mlp", last, "", 0),
        (f"a{last}.h0", "logits", dims.n_layers, "", 0),
        ("input", "logits", dims.n_layers, "", 0),
    ]
    rows = torch.arange(B)
    plain = gated.plain_logits(clean, mask, pos)
    with EdgeModel(gated, graph) as edges:
        for up, kind, layer, part, index in cases:
            group = graph.group(kind, layer)
            r = next(i for i, x in enumerate(group.rows) if (x.part, x.index) == (part, index))
            flat = torch.ones(graph.n_edges)
            gates = graph.split(flat)
            gates[group.name][r, ups[up]] = 0.0
            with torch.no_grad():
                got = edges.edge_logits(clean, mask, pos, {}, gates, ablated)
            upstream = graph.upstream[ups[up]]
            expected = hand.run(upstream, group, group.rows[r], clean, corrupted, mask)[rows, pos]
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5, msg=f"{up}->{kind}")
            assert not torch.allclose(got, plain, atol=1e-4), f"{up}->{kind} changed nothing"


def test_unsupported_family_is_refused(tokenizer):
    from conftest import tiny_model

    loaded = tiny_model("gpt_neox", tokenizer)
    gated = GatedModel(loaded)
    with pytest.raises(NodepruneError, match="does not support model type 'gpt_neox'"):
        EdgeModel(gated, EdgeGraph.full(loaded.dims))


@pytest.mark.parametrize("kind", ["mean", "zero"])
@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_closing_one_edge_under_mean_and_zero_ablation(model_type, kind, tokenizer):
    row = next(r for r in SUPPORTED if r.model_type == model_type)
    loaded = build(row, tokenizer)
    gated = GatedModel(loaded)
    clean, corrupted, mask, pos = _batch()
    values = {}
    if kind == "mean":
        values = {k: v.mean(dim=(0, 1)) for k, v in gated.record(clean, mask).items()}
    ablated = Ablated(values, ABLATIONS[kind])
    dims = loaded.dims
    graph = EdgeGraph.full(dims)
    ups = {u.name: i for i, u in enumerate(graph.upstream)}
    hand = _HandPatch(row, loaded.model, dims)
    last = dims.n_layers - 1
    rows = torch.arange(B)
    cases = [("a0.h2", "attn", last, "q", 1), ("m0", "logits", dims.n_layers, "", 0)]
    with EdgeModel(gated, graph) as edges:
        for up, group_kind, layer, part, index in cases:
            group = graph.group(group_kind, layer)
            r = next(i for i, x in enumerate(group.rows) if (x.part, x.index) == (part, index))
            gates = graph.split(torch.ones(graph.n_edges))
            gates[group.name][r, ups[up]] = 0.0
            with torch.no_grad():
                got = edges.edge_logits(clean, mask, pos, {}, gates, ablated)
            upstream = graph.upstream[ups[up]]
            expected = hand.run(upstream, group, group.rows[r], clean, corrupted, mask, kind)
            torch.testing.assert_close(got, expected[rows, pos], atol=1e-5, rtol=1e-5)
