"""The edge phase's forward pass on every family it supports: with every edge open it is
the stock model (and the node circuit), and closing one edge gives what path patching
that edge by hand gives (plain hooks on the stock modules, a corrupted pass then a clean
one). Families it does not support are refused with one line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import transformers as tf
from tiny_models import ROWS, _llama_like, build

from nodeprune.ablations import ABLATIONS, Ablated
from nodeprune.edges import EDGE_LAYOUTS, EdgeGraph, EdgeModel, edge_layout
from nodeprune.edges.export import _child_key
from nodeprune.errors import NodepruneError
from nodeprune.export_eap import eap_edges
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


def _full(loaded) -> EdgeGraph:
    return EdgeGraph.full(loaded.dims, parallel=edge_layout(loaded.model).parallel)


def _open(graph: EdgeGraph) -> dict[str, torch.Tensor]:
    return graph.split(torch.ones(graph.n_edges))


def _node_masks(dims, seed: int = 1) -> dict[str, torch.Tensor]:
    """A node circuit: some heads and some MLP neurons pruned (in a mixture of experts,
    a routed expert and some of the others' neurons)."""
    g = torch.Generator().manual_seed(seed)
    heads = (torch.rand(dims.n_layers, dims.n_heads, generator=g) > 0.4).float()
    heads[0, 0] = heads[1, 1] = 1.0
    masks = {"attention_head": heads, "mlp_block": torch.ones(dims.n_layers)}
    if dims.d_mlp:
        masks["mlp_neuron"] = (torch.rand(dims.n_layers, dims.d_mlp, generator=g) > 0.3).float()
    if dims.n_experts:
        experts = torch.ones(dims.n_layers, dims.n_experts)
        experts[0, 1] = 0.0
        masks["expert"] = experts
        shape = (dims.n_layers, dims.n_experts, dims.d_expert)
        masks["expert_neuron"] = (torch.rand(*shape, generator=g) > 0.3).float()
    return masks


@pytest.mark.parametrize("row", SUPPORTED, ids=lambda r: r.id)
def test_all_edges_open_is_the_stock_model_and_the_node_circuit(row, tokenizer):
    loaded, gated, args, _, ablated = _setup(row, tokenizer)
    dims = loaded.dims
    with torch.no_grad():
        plain = gated.plain_logits(*args)
        graph = _full(loaded)
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
        graph = EdgeGraph(dims, kept, parallel=edge_layout(loaded.model).parallel)
        assert graph.n_edges < _full(loaded).n_edges
        with EdgeModel(gated, graph) as edges:
            opened = edges.edge_logits(*args, nodes, _open(graph), ablated)
        torch.testing.assert_close(opened, node_circuit, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(node_circuit, plain, atol=1e-3)


@pytest.mark.parametrize("row", SUPPORTED, ids=lambda r: r.id)
def test_recomputed_head_inputs_give_the_same_logits_and_gradients(row, tokenizer):
    """The heads' own inputs are recomputed in the backward pass (EdgeModel.recompute):
    the same logits and the same gradient for every edge gate as when they are kept."""
    loaded, gated, args, _, ablated = _setup(row, tokenizer)
    graph = _full(loaded)
    start = torch.rand(graph.n_edges, generator=torch.Generator().manual_seed(3))
    results = []
    for recompute in (False, True):
        flat = start.clone().requires_grad_(True)
        with EdgeModel(gated, graph, recompute=recompute) as edges:
            logits = edges.edge_logits(*args, {}, graph.split(flat), ablated)
        (logits.float().log_softmax(-1)[:, :50].sum()).backward()
        results.append((logits.detach(), flat.grad))
    (kept_logits, kept_grad), (logits, grad) = results
    torch.testing.assert_close(logits, kept_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, kept_grad, atol=1e-5, rtol=1e-4)
    # Every kind of edge carries gradient (a head's query, key and value rows included).
    assert (grad.abs() > 0).float().mean() > 0.5


def _module(model, path: str, layer: int | None = None):
    return model.get_submodule(path.format(i=layer) if layer is not None else path)


def _no_norm(x):
    return x


def _blocks(part: str, index: int, dims) -> int:
    """Query heads, then key heads, then value heads (GPT-2's c_attn, Phi-3's qkv_proj,
    Falcon's multi-query query_key_value): the column where a head's slice starts."""
    offset = {"q": 0, "k": dims.n_heads, "v": dims.n_heads + dims.n_kv_heads}[part]
    return (offset + index) * dims.head_dim


def _per_head(part: str, index: int, dims) -> int:
    """view(B, T, heads, 3, head_dim) (GPT-NeoX, Falcon without multi-query)."""
    return (3 * index + "qkv".index(part)) * dims.head_dim


def _kv_groups(part: str, index: int, dims) -> int:
    """Falcon's new decoder architecture: view(B, T, kv_heads, group + 2, head_dim)."""
    group = dims.n_heads // dims.n_kv_heads
    kv, slot = (index // group, index % group) if part == "q" else (index, group + (part == "v"))
    return (kv * (group + 2) + slot) * dims.head_dim


@dataclass(frozen=True)
class _Paths:
    """A family's modules as its modeling file has them ({i}: the layer). ``mlp_norm``
    None: the attention's norm also feeds the MLP (``mlp`` is then patched at its input);
    an empty norm: the block reads the residual stream itself. ``proj``: the q/k/v
    projection ({p}: q, k or v), or the fused one with ``column``. ``post_norm``: the
    norm on the attention's output, through which a head writes to the residual stream."""

    block: str
    attn_norm: str
    mlp_norm: str | None
    final: str
    proj: str
    column: Callable | None = None
    parallel: bool = False
    post_norm: str = ""


_LLAMA_PATHS = _Paths(
    "model.layers.{i}",
    "input_layernorm",
    "post_attention_layernorm",
    "model.norm",
    "self_attn.{p}_proj",
)
_FALCON = ("transformer.h.{i}", "transformer.ln_f", "self_attention.query_key_value")
_GEMMA2_PATHS = _Paths(
    "model.layers.{i}",
    "input_layernorm",
    "pre_feedforward_layernorm",
    "model.norm",
    "self_attn.{p}_proj",
    post_norm="post_attention_layernorm",
)
_OLMO2_PATHS = _Paths(
    "model.layers.{i}",
    "",
    "",
    "model.norm",
    "self_attn.{p}_proj",
    post_norm="post_attention_layernorm",
)
#: By row id; every other supported row has Llama's modules.
_HAND_PATHS = {
    "gemma2": _GEMMA2_PATHS,
    "gemma3_text": _GEMMA2_PATHS,
    "glm4": _Paths(
        "model.layers.{i}", "input_layernorm", "post_attention_layernorm", "model.norm",
        "self_attn.{p}_proj", post_norm="post_self_attn_layernorm",
    ),
    "olmo2": _OLMO2_PATHS,
    "olmo3": _OLMO2_PATHS,
    "gpt2": _Paths(
        "transformer.h.{i}", "ln_1", "ln_2", "transformer.ln_f", "attn.c_attn", _blocks
    ),
    "phi3": _Paths(
        "model.layers.{i}", "input_layernorm", "post_attention_layernorm", "model.norm",
        "self_attn.qkv_proj", _blocks,
    ),
    "gpt_neox": _Paths(
        "gpt_neox.layers.{i}", "input_layernorm", "post_attention_layernorm",
        "gpt_neox.final_layer_norm", "attention.query_key_value", _per_head, parallel=True,
    ),
    "gptj": _Paths(
        "transformer.h.{i}", "ln_1", None, "transformer.ln_f", "attn.{p}_proj", parallel=True
    ),
    "phi": _Paths(
        "model.layers.{i}", "input_layernorm", None, "model.final_layernorm",
        "self_attn.{p}_proj", parallel=True,
    ),
    "falcon": _Paths(
        _FALCON[0], "input_layernorm", None, _FALCON[1], _FALCON[2], _blocks, parallel=True
    ),
    "falcon-new-arch": _Paths(
        _FALCON[0], "ln_attn", "ln_mlp", _FALCON[1], _FALCON[2], _kv_groups, parallel=True
    ),
    "falcon-alibi": _Paths(
        _FALCON[0], "input_layernorm", "post_attention_layernorm", _FALCON[1], _FALCON[2],
        _per_head,
    ),
}  # fmt: skip


class _HandPatch:
    """Path patching of one edge with plain hooks on the stock modules (paths from the
    modeling files): record u's output on the corrupted prompt, then on the clean run
    give d the input ``clean_input - (out_u_clean - out_u_corrupted)``."""

    def __init__(self, row, model, dims):
        self.row, self.model, self.dims = row, model, dims
        self.paths = _HAND_PATHS.get(row.id, _LLAMA_PATHS)

    def _u_output(self, upstream):
        """A hook recording u's output into the residual stream, and where it goes."""
        store = {}
        if upstream.kind == "embed":
            mod = _module(self.model, self.row.embed)

            def hook(m, a, out):
                store["out"] = out

            return mod.register_forward_hook(hook), store
        if upstream.kind == "mlp":
            mod = _module(self.model, self.row.mlp_output, upstream.layer)

            def hook(m, a, out):
                store["out"] = out.clone()  # Falcon adds the attention to it in place

            return mod.register_forward_hook(hook), store
        mod = _module(self.model, self.row.attn_z, upstream.layer)
        hd, h = self.dims.head_dim, upstream.head
        if self.paths.post_norm:
            # The head writes post_norm(o_proj(z)) with the other heads: record its z
            # slice; delta() is the attention output minus that with the slice patched.
            post = _module(self.model, f"{self.paths.block}.{self.paths.post_norm}", upstream.layer)

            def record(m, args):
                store["out"] = args[0][..., h * hd : (h + 1) * hd]
                if "patched" in store:
                    z = args[0].clone()
                    z[..., h * hd : (h + 1) * hd] = store["patched"]
                    store["delta"] = post.forward(m.forward(args[0])) - post.forward(m.forward(z))

            return mod.register_forward_pre_hook(record), store

        def pre(m, args):
            z = args[0][..., h * hd : (h + 1) * hd]
            weight = m.weight.t() if self.row.model_type == "gpt2" else m.weight  # [d_model, in]
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
        paths = self.paths
        store["patched"] = corrupted_out

        def delta():
            return store["delta"] if "delta" in store else store["out"] - corrupted_out

        def block(name: str) -> str:
            return f"{paths.block}.{name}"

        if group.kind != "logits" and paths.attn_norm:
            attn_norm = _module(self.model, block(paths.attn_norm), group.layer)
            normalize = attn_norm.forward
        elif group.kind != "logits":  # the attention reads the residual stream itself
            attn_norm = _module(self.model, block("self_attn"), group.layer)
            normalize = _no_norm
        if group.kind == "logits":
            norm = _module(self.model, paths.final)
            handles.append(norm.register_forward_pre_hook(lambda m, a: (a[0] - delta(), *a[1:])))
        elif group.kind == "mlp" and paths.mlp_norm is not None:
            norm = _module(self.model, block(paths.mlp_norm or "mlp"), group.layer)
            handles.append(norm.register_forward_pre_hook(lambda m, a: (a[0] - delta(), *a[1:])))
        else:

            def capture(m, args, kwargs):
                patch["r"] = args[0] if args else kwargs["hidden_states"]

            handles.append(attn_norm.register_forward_pre_hook(capture, with_kwargs=True))
        if group.kind == "mlp" and paths.mlp_norm is None:
            mlp = _module(self.model, block("mlp"), group.layer)
            handles.append(
                mlp.register_forward_pre_hook(
                    lambda m, a: (normalize(patch["r"] - delta()), *a[1:])
                )
            )
        elif group.kind == "attn":
            hd = self.dims.head_dim
            if paths.column is not None:
                proj = _module(self.model, block(paths.proj), group.layer)
                start = paths.column(row.part, row.index, self.dims)
            else:
                proj = _module(self.model, block(paths.proj.format(p=row.part)), group.layer)
                start = row.index * hd

            def proj_hook(m, a, out):
                patched = m.forward(normalize(patch["r"] - delta()))
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
    graph = _full(loaded)
    hand = _HandPatch(row, loaded.model, dims)
    assert graph.parallel == hand.paths.parallel
    ups = {u.name: i for i, u in enumerate(graph.upstream)}
    last = dims.n_layers - 1
    # A parallel block's MLP reads the heads below its layer only.
    into_mlp = f"a{last - 1 if graph.parallel else last}.h1"
    # (upstream, group kind, group layer, row part, row index): every kind of edge.
    cases = [
        ("input", "attn", 0, "q", 1),
        ("input", "attn", last, "k", 0),
        (f"a0.h{dims.n_heads - 1}", "attn", last, "v", 1 % dims.n_kv_heads),
        ("a0.h2", "attn", last, "q", 3),
        (into_mlp, "mlp", last, "", 0),
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


def test_every_row_is_supported_and_a_detected_family_is_refused(tokenizer):
    """Every verified family has an edge layout; a family nodeprune only detects by its
    module pattern (Arcee, Llama's) has no conformance row here, so it is refused."""
    assert {r.model_type for r in ROWS} <= set(EDGE_LAYOUTS)
    row = _llama_like("arcee", tf.ArceeConfig, tf.ArceeForCausalLM)
    gated = GatedModel(build(row, tokenizer))
    with pytest.raises(NodepruneError, match="does not support model type 'arcee'") as err:
        EdgeModel(gated, EdgeGraph.full(gated.dims))
    message = str(err.value)
    assert "\n" not in message and all(t in message for t in EDGE_LAYOUTS)


@pytest.mark.parametrize("row", SUPPORTED, ids=lambda r: r.id)
def test_candidate_edges_are_eap_igs_edges(row, tokenizer):
    """The full graph's edges are EAP-IG's (its parallel_attn_mlp graph for parallel
    blocks), a key/value head's standing for every query head of its group."""
    loaded = build(row, tokenizer)
    dims, graph = loaded.dims, _full(loaded)
    group_size = dims.n_heads // dims.n_kv_heads
    eap = {
        (p, _child_key(c, s, group_size))
        for p, c, s in eap_edges(dims.n_layers, dims.n_heads, graph.parallel)
    }
    assert set(graph.edge_names()) == eap
    assert len(graph.edge_names()) == len(eap)
    mlp = graph.group("mlp", 0)
    read = {u.name for u in graph.upstream[: mlp.n_upstream]}
    assert ("a0.h0" in read) != graph.parallel


def test_a_graph_for_other_blocks_is_refused(tokenizer):
    row = next(r for r in SUPPORTED if r.id == "gpt_neox")
    gated = GatedModel(build(row, tokenizer))
    with pytest.raises(NodepruneError, match="built for sequential blocks"):
        EdgeModel(gated, EdgeGraph.full(gated.dims, parallel=False))


@pytest.mark.parametrize("kind", ["mean", "zero"])
@pytest.mark.parametrize("row_id", ["gpt2", "llama", "gpt_neox", "phi", "gemma2", "olmo2"])
def test_closing_one_edge_under_mean_and_zero_ablation(row_id, kind, tokenizer):
    row = next(r for r in SUPPORTED if r.id == row_id)
    loaded = build(row, tokenizer)
    gated = GatedModel(loaded)
    clean, corrupted, mask, pos = _batch()
    values = {}
    if kind == "mean":
        values = {k: v.mean(dim=(0, 1)) for k, v in gated.record(clean, mask).items()}
    ablated = Ablated(values, ABLATIONS[kind])
    dims = loaded.dims
    graph = _full(loaded)
    ups = {u.name: i for i, u in enumerate(graph.upstream)}
    hand = _HandPatch(row, loaded.model, dims)
    last = dims.n_layers - 1
    rows = torch.arange(B)
    cases = [
        ("a0.h2", "attn", last, "q", 1),
        ("a0.h1", "mlp", last, "", 0),
        ("m0", "logits", dims.n_layers, "", 0),
    ]
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
