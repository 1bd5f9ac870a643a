"""Gating on the ordinary forward pass: open gates change nothing, a closed gate
gives its node exactly the ablated value, and upstream activations stay untouched."""

from __future__ import annotations

import pytest
import torch

from nodeprune.ablator import Ablator
from nodeprune.gates import GateSet
from nodeprune.granularity import GRANULARITIES
from nodeprune.intervention import GatedModel
from nodeprune.prompts import encode_examples
from nodeprune.splits import generate_split
from nodeprune.tasks.ioi import IOITask


def _batch(loaded, n=6):
    examples = generate_split(IOITask(), "train", n, 0, loaded.tokenizer)
    return encode_examples(examples, loaded.tokenizer)


def _open_gates(loaded):
    gates = GateSet(loaded.dims, list(GRANULARITIES))  # all the model has
    return {g: torch.ones_like(v) for g, v in gates.deterministic().items()}


def _capture(gated, module, kind):
    """Register a hook after nodeprune's, so it sees the gated value."""
    store = {}
    if kind == "input":
        handle = module.register_forward_pre_hook(lambda m, a: store.__setitem__("x", a[0].clone()))
    else:
        handle = module.register_forward_hook(lambda m, a, o: store.__setitem__("x", o.clone()))
    return store, handle


@pytest.mark.parametrize("ablation", ["corrupted", "mean", "zero"])
def test_open_gates_reproduce_the_model(family_model, ablation):
    gated = GatedModel(family_model)
    batch = _batch(family_model)
    ablator = Ablator(ablation, gated).fit(batch)
    args = (batch.clean_ids, batch.attention_mask, batch.answer_pos)
    plain = family_model.model(input_ids=batch.clean_ids, attention_mask=batch.attention_mask)
    rows = torch.arange(len(batch))
    expected = plain.logits[rows, batch.answer_pos]
    gated_out = gated.gated_logits(*args, _open_gates(family_model), ablator.values(batch))
    torch.testing.assert_close(gated_out, expected, atol=1e-5, rtol=1e-5)


def _sites(loaded, layer):
    a, m = loaded.adapter, loaded.model
    block = a.layers(m)[layer]
    return {
        "attn_z": (a.attn_out_proj(block), "input"),
        "mlp_hidden": (a.mlp_down_proj(block), "input"),
        "mlp_out": (a.mlp(block), "output"),
    }


def _site_values(gated, loaded, batch, gates, ablated, layer=1):
    sites = _sites(loaded, layer)
    stores, handles = {}, []
    for name, (module, kind) in sites.items():
        stores[name], h = _capture(gated, module, kind)
        handles.append(h)
    gated.gated_logits(batch.clean_ids, batch.attention_mask, batch.answer_pos, gates, ablated)
    for h in handles:
        h.remove()
    return {name: store["x"] for name, store in stores.items()}


CASES = [
    # (granularity to close, index, site that must take the ablated value, slice of it)
    ("attention_head", (1, 2), "attn_z", "head"),
    ("attention_neuron", (1, 0, 3), "attn_z", "neuron"),
    ("mlp_neuron", (1, 5), "mlp_hidden", "neuron"),
    ("mlp_block", (1,), "mlp_out", "all"),
    ("mlp_output", (1, 7), "mlp_out", "neuron"),
    ("attention_block", (1,), "attn_z", "all"),
]


@pytest.mark.parametrize("ablation", ["corrupted", "mean", "zero"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_closed_gate_takes_ablated_value(family_model, ablation, case):
    granularity, index, site, part = case
    loaded = family_model
    gated = GatedModel(loaded)
    batch = _batch(loaded)
    ablator = Ablator(ablation, gated).fit(batch)
    ablated = ablator.values(batch)
    gates = _open_gates(loaded)
    gates[granularity][index] = 0.0
    clean_rec = gated.record(batch.clean_ids, batch.attention_mask)
    corrupt_rec = gated.record(batch.corrupted_ids, batch.attention_mask)

    layer = index[0]
    module, kind = _sites(loaded, layer)[site]
    store, handle = _capture(gated, module, kind)
    up_module, up_kind = _sites(loaded, 0)["mlp_out"]
    up_store, up_handle = _capture(gated, up_module, up_kind)
    gated.gated_logits(batch.clean_ids, batch.attention_mask, batch.answer_pos, gates, ablated)
    handle.remove()
    up_handle.remove()

    got = store["x"]
    if ablation == "corrupted":
        target = corrupt_rec[(site, layer)]
    elif ablation == "mean":
        target = ablator.means[(site, layer)].expand_as(got)
    else:
        target = torch.zeros_like(got)
    dh = loaded.dims.head_dim
    if part == "head":
        sl = slice(index[1] * dh, (index[1] + 1) * dh)
    elif part == "neuron":
        flat = index[1] * dh + index[2] if site == "attn_z" else index[1]
        sl = slice(flat, flat + 1)
    else:
        sl = slice(None)
    mask = batch.attention_mask.bool()
    torch.testing.assert_close(got[..., sl][mask], target[..., sl][mask], atol=1e-5, rtol=1e-5)
    # Other units of the same site are not forced to the ablated value...
    if part != "all":
        others = torch.ones(got.shape[-1], dtype=torch.bool)
        others[sl] = False
        assert not torch.allclose(got[..., others][mask], target[..., others][mask])
    # ...and everything upstream (layer 0) is exactly the clean run.
    torch.testing.assert_close(up_store["x"], clean_rec[("mlp_out", 0)], atol=1e-6, rtol=1e-6)


def test_closing_a_layer_closes_its_children(llama_model):
    gated = GatedModel(llama_model)
    batch = _batch(llama_model)
    ablator = Ablator("corrupted", gated)
    ablated = ablator.values(batch)
    gates = _open_gates(llama_model)
    gates["layer"][0] = 0.0
    corrupt_rec = gated.record(batch.corrupted_ids, batch.attention_mask)
    got = _site_values(gated, llama_model, batch, gates, ablated, layer=0)
    mask = batch.attention_mask.bool()
    for name in ("attn_z", "mlp_out"):
        torch.testing.assert_close(got[name][mask], corrupt_rec[(name, 0)][mask])


def test_embedding_gate(llama_model):
    gated = GatedModel(llama_model)
    batch = _batch(llama_model)
    gates = {g: torch.zeros(1) for g in ["embedding"]}
    store, h = _capture(gated, llama_model.adapter.embedding(llama_model.model), "output")
    gated.gated_logits(
        batch.clean_ids,
        batch.attention_mask,
        batch.answer_pos,
        gates,
        Ablator("zero", gated).values(batch),
    )
    h.remove()
    assert torch.count_nonzero(store["x"]) == 0


@pytest.mark.parametrize("ablation", ["corrupted", "mean", "zero"])
@pytest.mark.parametrize(
    "granularity, site",
    [("mlp_block", "mlp_out"), ("layer", "attn_z"), ("attention_block", "attn_z")],
)
def test_a_gate_acts_once(family_model, ablation, granularity, site):
    """A block gate at 0.3 mixes its block's output 0.3 clean to 0.7 ablated, not
    0.3**2: the gate must not act both at the hidden neurons and at the output. (The
    layer gate is checked at attn_z: its MLP output also depends on its attention.)"""
    loaded = family_model
    granularities = ["layer", "attention_block", "mlp_block", "attention_neuron", "mlp_neuron"]
    gated = GatedModel(loaded, granularities)
    batch = _batch(loaded)
    ablator = Ablator(ablation, gated).fit(batch)
    gates = {g: v for g, v in _open_gates(loaded).items() if g in granularities}
    open_site = _site_values(gated, loaded, batch, gates, ablator.values(batch))[site]
    gates[granularity][1] = 0.0
    closed_site = _site_values(gated, loaded, batch, gates, ablator.values(batch))[site]
    gates[granularity][1] = 0.3
    half = _site_values(gated, loaded, batch, gates, ablator.values(batch))[site]
    mask = batch.attention_mask.bool()
    expected = 0.3 * open_site + 0.7 * closed_site
    torch.testing.assert_close(half[mask], expected[mask], atol=1e-5, rtol=1e-4)


def test_gate_gradients_match_lerp():
    """The memory-lean mix has the gradients of torch.lerp."""
    from nodeprune.intervention import mix_with_ablated

    torch.manual_seed(0)
    x = torch.randn(3, 5, 7, dtype=torch.float64, requires_grad=True)
    a = torch.randn(3, 5, 7, dtype=torch.float64)
    m = torch.rand(7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, m: mix_with_ablated(x, a, m), (x, m))
    weight = torch.randn(3, 5, 7, dtype=torch.float64)
    ours = torch.autograd.grad((mix_with_ablated(x, a, m) * weight).sum(), (x, m))
    ref = torch.autograd.grad((torch.lerp(a, x, m) * weight).sum(), (x, m))
    for got, want in zip(ours, ref, strict=True):
        torch.testing.assert_close(got, want)


def test_released_ablated_values_give_the_same_gradients(llama_model):
    """Freeing each corrupted activation after its site ran changes no gradient, and
    the spent values cannot be used twice."""
    from nodeprune.errors import NodepruneError

    gated = GatedModel(llama_model, ["attention_head", "mlp_neuron", "mlp_output"])
    batch = _batch(llama_model)
    ablator = Ablator("corrupted", gated)
    grads = []
    for release in (False, True):
        gates = GateSet(llama_model.dims, list(gated.granularities), 0.5, 0.5, seed=0)
        ablated = ablator.values(batch)
        logits = gated.gated_logits(
            batch.clean_ids,
            batch.attention_mask,
            batch.answer_pos,
            gates.sample(torch.Generator().manual_seed(0)),
            ablated,
            release_ablated=release,
        )
        logits.logsumexp(-1).sum().backward()
        grads.append(gates.log_alpha.grad.clone())
        assert (len(ablated.values) == 0) == release
    torch.testing.assert_close(grads[0], grads[1])
    with pytest.raises(NodepruneError, match="released"):
        gated.gated_logits(
            batch.clean_ids,
            batch.attention_mask,
            batch.answer_pos,
            {"attention_head": torch.ones(llama_model.dims.n_layers, llama_model.dims.n_heads)},
            ablated,
        )


def test_only_the_gated_sites_are_recorded(llama_model):
    from nodeprune.errors import NodepruneError
    from nodeprune.granularity import DEFAULT_GRANULARITIES

    gated = GatedModel(llama_model, DEFAULT_GRANULARITIES)
    batch = _batch(llama_model)
    ablated = Ablator("corrupted", gated).values(batch)
    assert {site for site, _ in ablated.values} == {"attn_z", "mlp_hidden"}
    with pytest.raises(NodepruneError, match="mlp_output"):
        gated.gated_logits(
            batch.clean_ids,
            batch.attention_mask,
            batch.answer_pos,
            {"mlp_output": torch.ones(llama_model.dims.n_layers, llama_model.dims.d_model)},
            ablated,
        )
