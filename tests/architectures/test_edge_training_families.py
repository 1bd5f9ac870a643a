"""The edge phase end to end beyond Llama's and GPT-2's blocks: parallel attention+MLP
(GPT-NeoX, and Phi, whose one norm feeds both branches), where a layer's MLP has no
candidate edge from its own heads, and a norm on the attention's output (Gemma 2, OLMo 2
without pre-norms), where the heads' corrections are recomputed through it: the implied
edges give the node circuit's metrics, training prunes edges (gradients reach the gates
through each path), and the edge circuit file and its EAP-IG graph keep the graph."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_discovery_config
from tiny_models import ROWS

from nodeprune import Discovery
from nodeprune.circuit import make_consistent
from nodeprune.edges import EdgeGraph
from nodeprune.edges.circuit import EdgeCircuit
from nodeprune.edges.config import EdgeConfig
from nodeprune.edges.curve import edge_curve
from nodeprune.edges.export import _child_key, edge_eap_graph
from nodeprune.edges.training import EdgeDiscovery, edge_workbench
from nodeprune.errors import NodepruneError
from nodeprune.export_mib import mib_graph
from nodeprune.models import wrap_model
from nodeprune.workbench import evaluate_circuit

PARALLEL = {"gpt_neox": True, "phi": True, "gemma2": False, "olmo2": False}


@pytest.fixture(scope="module", params=sorted(PARALLEL))
def family_run(request, tokenizer):
    """A tiny model of the family with large weights (so that edges matter to the KL)
    and a node circuit on it with one head pruned by hand."""
    row = next(r for r in ROWS if r.id == request.param)
    config = row.make()
    config.initializer_range = 0.5
    # The Gemma 2 row caps logits at 0.1, where no KL outweighs the sparsity term.
    config.final_logit_softcapping = None
    torch.manual_seed(0)
    loaded = wrap_model(row.model_class(config), tokenizer, f"tiny-{row.id}")
    cfg = tiny_discovery_config(steps=4, n_train=16, n_val=8, n_test=12, lr=0.1)
    circuit = Discovery(loaded, cfg).run(progress=False)
    masks = dict(circuit.masks)
    masks["attention_head"] = masks["attention_head"].clone()
    masks["attention_head"][1, 2] = False
    circuit.masks = make_consistent(masks, circuit.enabled)
    return loaded, circuit, PARALLEL[row.id]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-5


def test_what_an_mlp_reads_and_implied_edges_are_the_node_circuit(family_run):
    loaded, circuit, parallel = family_run
    expected = evaluate_circuit(loaded, circuit)
    with edge_workbench(loaded, circuit) as bench:
        with EdgeDiscovery(bench, circuit, EdgeConfig(steps=1)) as run:
            assert run.graph.parallel == parallel
            names = run.graph.edge_names()
            own = [p for p, c in names if c.startswith("m") and p.startswith(f"a{c[1:]}.")]
            assert bool(own) != parallel  # an MLP reads its own layer's heads if sequential
            assert ("a0.h0", "m1") in names
            implied = EdgeCircuit.implied(circuit, parallel=parallel)
            got = run.evaluate(implied.kept)
            assert all(_same(got[k], expected[k]) for k in expected), (got, expected)
            closed = run.evaluate(torch.zeros_like(implied.kept))
            assert not _same(closed["kl"], expected["kl"])
            # The curve's x counts the model's edges on the family's graph.
            curve = edge_curve(run, fractions=(0.5,))
            full = EdgeGraph.full(loaded.dims, parallel=parallel).n_edges
            assert curve["model_edges"] == full != EdgeGraph.full(loaded.dims, not parallel).n_edges


def test_training_prunes_edges_and_files_keep_the_graph(family_run, tmp_path):
    loaded, circuit, parallel = family_run
    with edge_workbench(loaded, circuit) as bench:
        # A sparsity weight no larger than what closing every edge costs (Gemma's tiny
        # model, whose scaled embedding outweighs its normed block outputs, 1e-3 of KL).
        with EdgeDiscovery(bench, circuit, EdgeConfig(steps=1)) as probe:
            every_edge_closed = probe.evaluate(torch.zeros(probe.graph.n_edges, dtype=torch.bool))
        lam = min(0.5, every_edge_closed["kl"])
        cfg = EdgeConfig(steps=30, lam=lam, lr=0.3, sparsity_warmup=0.0, batch_size=8)
        with EdgeDiscovery(bench, circuit, cfg) as run:
            result = run.run(progress=False)
    assert result.parallel == parallel
    assert all(math.isfinite(h.loss) for h in run.history)
    assert 0 < result.n_kept < len(result.kept)

    path = result.save(tmp_path / "edge_circuit.json")
    loaded_back = EdgeCircuit.load(path)
    assert loaded_back.parallel == parallel and torch.equal(loaded_back.kept, result.kept)
    assert loaded_back.kept_edges() == result.kept_edges()
    data = result.to_json()
    data["parallel_attn_mlp"] = not parallel  # the other graph has other candidates
    with pytest.raises(NodepruneError, match="expected|is not"):
        EdgeCircuit.from_json(data)
    data["parallel_attn_mlp"] = "yes"
    with pytest.raises(NodepruneError, match="parallel_attn_mlp must be true or false"):
        EdgeCircuit.from_json(data)

    graph = edge_eap_graph(result)
    assert graph["cfg"]["parallel_attn_mlp"] is parallel
    group_size = loaded.dims.n_heads // loaded.dims.n_kv_heads
    in_graph = {n for n, e in graph["edges"].items() if e["in_graph"]}
    as_graph_names = set()
    for name in in_graph:
        parent, child = name.split("->")
        head, _, suffix = child.partition("<")
        as_graph_names.add((parent, _child_key(head, f"<{suffix}" if suffix else "", group_size)))
    assert as_graph_names == set(result.kept_edges())

    # The MIB export ranks by these gates on the same graph, and refuses the other one.
    mib = dict(mib_model="tiny", mib_task="ioi")
    doc = mib_graph(circuit, parallel_attn_mlp=parallel, edges=result, **mib)[1]
    assert {n for n, e in doc["edges"].items() if e["in_graph"]} == in_graph
    with pytest.raises(NodepruneError, match="attention/MLP blocks and the export asks"):
        mib_graph(circuit, parallel_attn_mlp=not parallel, edges=result, **mib)
