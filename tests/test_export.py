"""Export to the EAP-IG / MIB graph JSON and to TransformerLens hook names."""

from __future__ import annotations

import json

import pytest
from eap_reader import read_eap_graph

from nodeprune.architectures.base import ModelDims
from nodeprune.circuit import Circuit, full_masks, make_consistent
from nodeprune.cli import main
from nodeprune.errors import NodepruneError
from nodeprune.export import eap_graph, export_circuit, tl_hooks
from nodeprune.granularity import GRANULARITIES

DIMS = ModelDims(n_layers=2, n_heads=2, head_dim=3, d_model=4, d_mlp=5, n_kv_heads=2)


def _circuit(model: str = "tiny-gpt2", scores: dict | None = None) -> Circuit:
    masks = full_masks(DIMS)
    masks["attention_head"][0, 1] = False
    masks["mlp_block"][1] = False
    masks["attention_neuron"][1, 0, 2] = False
    masks["mlp_neuron"][0, 1] = False
    masks["mlp_output"][0, 3] = False
    masks = make_consistent(masks, list(GRANULARITIES))
    extra = {"scores": scores} if scores else {}
    return Circuit(model, "ioi", "corrupted", 0, DIMS, masks, list(GRANULARITIES), extra=extra)


def test_graph_has_every_eap_node_and_edge():
    g = eap_graph(_circuit())
    assert list(g["nodes"]) == ["input", "a0.h0", "a0.h1", "m0", "a1.h0", "a1.h1", "m1", "logits"]
    # Sequential blocks, counted by hand: layer 0 heads read {input} (x2 heads x qkv = 6),
    # m0 reads input + 2 heads (3); layer 1 heads read 4 nodes (4 x 2 x 3 = 24), m1 reads
    # 6; logits read all 7 nodes. 6 + 3 + 24 + 6 + 7 = 46.
    assert len(g["edges"]) == 46
    assert g["cfg"] == {"n_layers": 2, "n_heads": 2, "parallel_attn_mlp": False, "d_model": 4}
    assert "a0.h0->a1.h1<k>" in g["edges"] and "a0.h0->m0" in g["edges"]
    assert "a0.h0->m0<q>" not in g["edges"] and "m1->a1.h0<q>" not in g["edges"]


def test_known_edge_counts_of_real_models():
    # GPT-2 small has 32,491 edges in EAP-IG's graph (the MIB figure).
    gpt2 = ModelDims(n_layers=12, n_heads=12, head_dim=64, d_model=768, d_mlp=3072, n_kv_heads=12)
    c = Circuit("gpt2", "ioi", "corrupted", 0, gpt2, full_masks(gpt2), ["attention_head"])
    assert len(eap_graph(c)["edges"]) == 32491


def test_parallel_blocks_drop_same_layer_head_to_mlp_edges():
    g = eap_graph(_circuit(), parallel_attn_mlp=True)
    assert "a0.h0->m0" not in g["edges"] and "a0.h0->m1" in g["edges"]
    assert len(g["edges"]) == 46 - 2 * 2  # two heads x two layers
    assert eap_graph(_circuit(model="EleutherAI/pythia-70m"))["cfg"]["parallel_attn_mlp"]


def test_kept_nodes_and_edges_between_them_are_in_graph():
    g = eap_graph(_circuit())
    nodes, edges = g["nodes"], g["edges"]
    assert not nodes["a0.h1"]["in_graph"] and not nodes["m1"]["in_graph"]
    assert nodes["a0.h0"]["in_graph"] and nodes["input"]["in_graph"] and nodes["logits"]["in_graph"]
    for name, edge in edges.items():
        parent, child = name.split("<")[0].split("->")
        assert edge["in_graph"] == (nodes[parent]["in_graph"] and nodes[child]["in_graph"]), name


def test_scores_follow_log_alpha_and_ancestors():
    scores = {
        "attention_head": [[3.0, -2.0], [1.0, 2.0]],
        "attention_block": [5.0, 0.5],
        "mlp_block": [4.0, -1.0],
    }
    g = eap_graph(_circuit(scores=scores))
    s = {k: v["score"] for k, v in g["nodes"].items() if "score" in v}
    # a1.h1's own log-alpha 2.0 and a1.h0's 1.0 are both capped by their block's 0.5.
    assert s["a1.h1"] == pytest.approx(s["a1.h0"])
    assert s["a0.h0"] > s["a1.h1"] > s["a0.h1"]
    assert s["m0"] > 0.5 > s["m1"]
    assert all(0.0 <= v <= 1.0 for v in s.values())
    assert g["edges"]["a0.h0->m0"]["score"] == pytest.approx(min(s["a0.h0"], s["m0"]))


def test_neuron_masks_are_per_residual_dimension():
    g = eap_graph(_circuit(), neurons=True)
    assert g["nodes"]["m0"]["neurons"] == [True, True, True, False]
    # A head carries its layer's [n_heads][d_model] block, the layout EAP-IG reads.
    assert g["nodes"]["a0.h0"]["neurons"] == [[True] * 4, [False] * 4]
    assert g["nodes"]["a0.h1"]["neurons"] == g["nodes"]["a0.h0"]["neurons"]
    assert "neurons" not in g["nodes"]["logits"]


def test_eap_ig_reads_the_neurons_of_every_kept_head():
    # a0.h1, the last head of layer 0, is pruned: with a flat list per head, EAP-IG's
    # reader would broadcast its all-false list over the layer and ablate a0.h0.
    read = read_eap_graph(eap_graph(_circuit(), neurons=True))
    assert read.kept("a0.h0") and read.neurons("a0.h0").all()
    assert not read.kept("a0.h1") and not read.neurons("a0.h1").any()
    assert read.kept("a1.h0") and read.kept("a1.h1") and read.kept("input")
    assert read.neurons("m0").tolist() == [True, True, True, False]
    assert not read.kept("m1")


def _blocks_only(tmp_path) -> Circuit:
    """Blocks gated, heads not: attention block 1 and MLP 0 pruned, saved and loaded
    (on disk the head masks are absent, so they load as all kept)."""
    enabled = ["attention_block", "mlp_block"]
    masks = full_masks(DIMS)
    masks["attention_block"][1] = False
    masks["mlp_block"][0] = False
    c = Circuit("tiny-gpt2", "ioi", "corrupted", 0, DIMS, make_consistent(masks, enabled), enabled)
    return Circuit.load(c.save(tmp_path / "circuit.json"))


def test_exports_prune_the_heads_of_a_pruned_block(tmp_path):
    loaded = _blocks_only(tmp_path)
    assert bool(loaded.masks["attention_head"].all())  # the raw masks, as loaded
    nodes = eap_graph(loaded)["nodes"]
    assert [nodes[f"a1.h{h}"]["in_graph"] for h in range(2)] == [False, False]
    assert [nodes[f"a0.h{h}"]["in_graph"] for h in range(2)] == [True, True]
    assert not nodes["m0"]["in_graph"] and nodes["m1"]["in_graph"]
    assert nodes["a1.h0"]["score"] == 0.0
    hooked = {e["node"] for e in tl_hooks(loaded)["nodes"]}
    assert hooked == {"input", "a0.h0", "a0.h1", "m1"}


def test_a_loaded_circuit_counts_what_it_keeps(tmp_path):
    loaded = _blocks_only(tmp_path)
    assert loaded.kept("attention_head") == 2 and loaded.per_layer("attention_head") == [2, 0]
    assert loaded.kept("mlp_neuron") == DIMS.d_mlp
    assert loaded.granularities()["attention_neuron"]["kept"] == 2 * DIMS.head_dim
    eff = loaded.effective_masks()
    assert not bool(eff["attention_head"][1].any()) and bool(eff["attention_head"][0].all())


def test_tl_hooks_list_kept_nodes_with_indices():
    out = tl_hooks(_circuit())
    by_node = {}
    for e in out["nodes"]:
        by_node.setdefault(e["node"], []).append(e)
    assert set(by_node) == {"input", "a0.h0", "m0", "a1.h0", "a1.h1"}
    assert by_node["a1.h0"][0] == {
        "node": "a1.h0", "hook": "blocks.1.attn.hook_z", "layer": 1, "head": 0, "dims": [0, 1]
    }  # fmt: skip
    hooks = {e["hook"]: e for e in by_node["m0"]}
    assert hooks["blocks.0.mlp.hook_post"]["neurons"] == [0, 2, 3, 4]
    assert hooks["blocks.0.hook_mlp_out"]["dims"] == [0, 1, 2]
    assert out["hook_names"][0] == "hook_embed"
    assert "blocks.1.mlp.hook_post" not in out["hook_names"]


def test_cli_writes_both_formats(tmp_path, capsys):
    path = _circuit().save(tmp_path / "run" / "circuit.json")
    out = tmp_path / "graph.json"
    assert main(["export", str(path), "--format", "eap-ig", "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())["edges"]) == 46
    # A run folder works as well as the file; without --out the JSON goes to stdout.
    assert main(["export", str(tmp_path / "run"), "--format", "tl-hooks"]) == 0
    assert "blocks.0.attn.hook_z" in json.loads(capsys.readouterr().out)["hook_names"]


def test_unknown_format_is_a_clear_error():
    with pytest.raises(NodepruneError, match="eap-ig"):
        export_circuit(_circuit(), "eap_ig")
