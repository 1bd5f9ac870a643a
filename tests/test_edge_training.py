"""The edge phase on a tiny model: candidate edges only between surviving nodes, the
implied edges reproduce the node circuit's metrics, training prunes edges, the circuit
file round-trips, a resumed run ends where an uninterrupted one does, targets."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_config, tiny_discovery_config
from transformers import LlamaForCausalLM

from nodeprune import Discovery
from nodeprune.circuit import make_consistent
from nodeprune.edges import EdgeGraph
from nodeprune.edges.circuit import EdgeCircuit
from nodeprune.edges.config import EdgeConfig
from nodeprune.edges.training import EdgeDiscovery, edge_workbench
from nodeprune.errors import NodepruneError
from nodeprune.models import wrap_model
from nodeprune.workbench import evaluate_circuit


@pytest.fixture
def llama_model(tokenizer):
    """A tiny Llama with large weights: at the usual 0.02 a random model's KL to itself
    with every edge closed is 1e-4, too small for the gates to learn anything."""
    config = tiny_config("llama")
    config.initializer_range = 0.5
    torch.manual_seed(0)
    return wrap_model(LlamaForCausalLM(config), tokenizer, "tiny-llama")


@pytest.fixture
def node_circuit(llama_model):
    cfg = tiny_discovery_config(steps=4, n_train=16, n_val=8, n_test=12, lr=0.1)
    circuit = Discovery(llama_model, cfg).run(progress=False)
    # Prune a head and an MLP block by hand: the edge phase must leave them out.
    masks = dict(circuit.masks)
    masks["attention_head"] = masks["attention_head"].clone()
    masks["attention_head"][0, 1] = False
    masks["mlp_block"] = masks["mlp_block"].clone()
    masks["mlp_block"][0] = False
    circuit.masks = make_consistent(masks, circuit.enabled)
    return circuit


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-5


def test_candidates_are_only_between_surviving_nodes(node_circuit):
    graph = EdgeGraph(node_circuit.dims, node_circuit.effective_masks())
    names = {u.name for u in graph.upstream}
    assert "a0.h1" not in names and "m0" not in names
    children = {c for _, c in graph.edge_names()}
    assert "m0" not in children and "a0.h1<q>" not in children
    assert graph.n_edges < EdgeGraph.full(node_circuit.dims).n_edges


def test_implied_edges_give_the_node_circuits_metrics(llama_model, node_circuit):
    expected = evaluate_circuit(llama_model, node_circuit)
    with edge_workbench(llama_model, node_circuit) as bench:
        with EdgeDiscovery(bench, node_circuit, EdgeConfig(steps=1)) as run:
            implied = EdgeCircuit.implied(node_circuit)
            got = run.evaluate(implied.kept)
            assert all(_same(got[k], expected[k]) for k in expected), (got, expected)
            # Closing every edge into the logits is a different circuit.
            closed = run.evaluate(torch.zeros_like(implied.kept))
            assert not _same(closed["kl"], expected["kl"])


def test_training_prunes_edges_and_the_file_round_trips(llama_model, node_circuit, tmp_path):
    with edge_workbench(llama_model, node_circuit) as bench:
        cfg = EdgeConfig(steps=30, lam=0.5, lr=0.3, sparsity_warmup=0.0, batch_size=8)
        with EdgeDiscovery(bench, node_circuit, cfg) as run:
            result = run.run(progress=False)
    assert all(math.isfinite(h.loss) for h in run.history)
    assert run.history[-1].kept < run.history[0].kept
    assert 0 < result.n_kept < len(result.kept)
    loaded = EdgeCircuit.load(result.save(tmp_path / "edge_circuit.json"))
    assert torch.equal(loaded.kept, result.kept)
    assert all(_same(loaded.metrics[k], v) for k, v in result.metrics.items())
    assert len(loaded.kept_edges()) == result.n_kept


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(llama_model, node_circuit, tmp_path):
    cfg = EdgeConfig(steps=6, batch_size=4, lr=0.3)
    with edge_workbench(llama_model, node_circuit) as bench:
        with EdgeDiscovery(bench, node_circuit, cfg) as whole:
            whole.run(progress=False)
        with EdgeDiscovery(bench, node_circuit, cfg) as first:
            for _ in range(3):
                first.train_step()
            first.save_checkpoint(tmp_path)
        with EdgeDiscovery(bench, node_circuit, cfg) as resumed:
            resumed.load_checkpoint(tmp_path)
            assert resumed.step == 3
            resumed.run(progress=False)
        assert torch.equal(resumed.log_alpha, whole.log_alpha)
        other = EdgeConfig(steps=6, batch_size=4, lr=0.2)
        with EdgeDiscovery(bench, node_circuit, other) as wrong:
            with pytest.raises(NodepruneError, match="another config"):
                wrong.load_checkpoint(tmp_path)


def test_size_target_keeps_at_most_that_fraction(llama_model, node_circuit):
    with edge_workbench(llama_model, node_circuit) as bench:
        cfg = EdgeConfig(steps=4, target_size=0.3, batch_size=8)
        with EdgeDiscovery(bench, node_circuit, cfg) as run:
            result = run.run(progress=False)
    assert result.n_kept <= 0.3 * len(result.kept)
    assert result.n_kept >= 0.3 * len(result.kept) - 1
    assert result.extra["target"]["kind"] == "size"


def test_kl_target_is_met_on_validation(llama_model, node_circuit):
    with edge_workbench(llama_model, node_circuit) as bench:
        # The edge circuit can at best be its node circuit (every edge kept).
        with EdgeDiscovery(bench, node_circuit, EdgeConfig(target_kl=100.0)) as probe_run:
            every_edge = torch.ones(probe_run.graph.n_edges, dtype=torch.bool)
            best = probe_run.probe.score({"edges": every_edge})["kl"]
        asked = 1.2 * best
        cfg = EdgeConfig(steps=4, target_kl=asked, batch_size=8, target_every=2)
        with EdgeDiscovery(bench, node_circuit, cfg) as run:
            result = run.run(progress=False)
            measured = run.probe.score({"edges": result.kept})["kl"]
    assert measured <= asked + 1e-9
    assert result.n_kept < len(result.kept)
    assert result.extra["target"]["validation"] == pytest.approx(measured)


def test_edge_pruning_harm_is_the_slope_of_the_targets_quantity(llama_model, node_circuit):
    # An edge's gate enters linearly (its downstream input moves by (1 - m) times the
    # upstream difference), so closing it a little changes the quantity by harm x that.
    # KL: on this random model faithfulness is undefined (full and ablated score alike);
    # the faithfulness branch is the node gates' (tests/test_targets.py).
    kind = "kl"
    with edge_workbench(llama_model, node_circuit) as bench:
        with EdgeDiscovery(bench, node_circuit, EdgeConfig(target_kl=100.0)) as run:
            probe, n = run.probe, run.graph.n_edges
            generator = torch.Generator().manual_seed(2)
            mask = (torch.rand(n, generator=generator) > 0.3).float()
            harm = probe.pruning_harm({"edges": mask}, kind)["edges"]
            assert harm.shape == (n,)
            sign = 1.0 if kind == "faithfulness" else -1.0
            base = probe.score({"edges": mask})[kind]
            eps = 1e-2
            for index in (int(harm.abs().argmax()), int(harm.abs().argmin())):
                nudged = mask.clone()
                step = -eps if mask[index] > 0 else eps
                nudged[index] += step
                slope = sign * (probe.score({"edges": nudged})[kind] - base) / step
                assert slope == pytest.approx(float(harm[index]), rel=0.05, abs=1e-4)
            assert float(harm.abs().max()) > 1e-3


def test_tied_edges_are_cut_in_the_order_of_their_harm(tokenizer):
    # A model trained on IOI, where faithfulness is defined and edges matter.
    from reports.tiny_ioi import trained_ioi_gpt2

    loaded = trained_ioi_gpt2(tokenizer)
    cfg = tiny_discovery_config(steps=2, n_train=16, n_val=32, n_test=12, lr=0.1)
    with Discovery(loaded, cfg) as discovery:
        node = discovery.run(progress=False)
    with edge_workbench(loaded, node) as bench:
        # Low: on this 2-layer model single edges into keys move faithfulness by up to
        # 0.5, against first-order estimates of about 0.1 (softmax), so the harm order's
        # first edges already cost much of it.
        cfg = EdgeConfig(steps=2, target_faithfulness=0.3, batch_size=8)
        with EdgeDiscovery(bench, node, cfg) as run:
            run.run(progress=False)
            with torch.no_grad():
                run.log_alpha.fill_(10.0)  # every edge at the clamp: all tied
            run.selection = None
            kept = run.final_mask()
            assert run.selection.tie_break == "pruning_harm"
            assert run.selection.measured >= 0.3
            assert 0 < int(kept.sum()) < run.graph.n_edges
            every = torch.ones(run.graph.n_edges)
            harm = run.probe.pruning_harm({"edges": every}, "faithfulness")["edges"]
            # The edges dropped are the least harmful ones.
            assert float(harm[~kept].max()) <= float(harm[kept].min())
