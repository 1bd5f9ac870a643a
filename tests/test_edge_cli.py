"""``nodeprune edges RUN``: the edge phase on a discover run folder, its files, its
refusals, and ``export --format eap-ig`` of the edge circuit with real in-graph edges."""

from __future__ import annotations

import json

import pytest

from nodeprune.cli import main
from nodeprune.edges.circuit import EdgeCircuit
from nodeprune.run_files import CIRCUIT_FILE, EDGE_CIRCUIT_FILE, EDGES_DIR

FAST = ["--steps", "3", "--n-train", "16", "--n-val", "8", "--n-test", "8", "--no-filter"]
FAST += ["--lam", "0.95"]  # lam mode: a random tiny model's faithfulness is undefined


@pytest.fixture(scope="module")
def node_run(tiny_llama_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("edge-cli") / "run"
    argv = ["discover", "--model", str(tiny_llama_dir), "--out", str(out), "--quiet"]
    assert main([*argv, *FAST]) == 0
    return out


def test_edges_writes_the_edge_circuit_and_its_eap_graph(node_run, tmp_path, capsys):
    eap = tmp_path / "graph.json"
    argv = ["edges", str(node_run), "--steps", "4", "--quiet", "--eap", str(eap)]
    assert main([*argv, "--batch-size", "8"]) == 0
    assert "edges kept" in capsys.readouterr().out
    result = EdgeCircuit.load(node_run / EDGES_DIR / EDGE_CIRCUIT_FILE)
    assert not (node_run / EDGES_DIR / "checkpoint.json").exists()
    graph = json.loads(eap.read_text())
    in_graph = {k for k, e in graph["edges"].items() if e["in_graph"]}
    kept = result.kept_edges()
    # Every kept edge is in the graph; under grouped-query attention a kept key/value
    # edge stands for each query head of its group.
    group = result.node.dims.n_heads // result.node.dims.n_kv_heads
    expected = 0
    for _, child in kept:
        expected += group if child.endswith(("<k>", "<v>")) else 1
    assert len(in_graph) == expected
    for edge in in_graph:
        parent, child = edge.split("->")
        assert (
            graph["nodes"][parent]["in_graph"] and graph["nodes"][child.split("<")[0]]["in_graph"]
        )
    # The same graph from `export` on the edge circuit file.
    out = tmp_path / "again.json"
    path = node_run / EDGES_DIR / EDGE_CIRCUIT_FILE
    assert main(["export", str(path), "--format", "eap-ig", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["edges"] == graph["edges"]


def test_an_edge_run_is_not_clobbered(node_run, capsys):
    assert main(["edges", str(node_run), "--steps", "2", "--quiet"]) in (0, 2)
    capsys.readouterr()
    assert main(["edges", str(node_run), "--steps", "2", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["edges", str(node_run), "--steps", "2", "--quiet", "--overwrite"]) == 0


def test_a_folder_without_a_node_circuit_is_refused(tmp_path, capsys):
    assert main(["edges", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert CIRCUIT_FILE in err and "discover" in err


def _edge_circuit(node_run) -> EdgeCircuit:
    path = node_run / EDGES_DIR / EDGE_CIRCUIT_FILE
    if not path.exists():
        assert main(["edges", str(node_run), "--steps", "2", "--quiet"]) == 0
    return EdgeCircuit.load(path)


def test_edge_circuits_export_as_eap_ig_or_mib_only(node_run, capsys):
    _edge_circuit(node_run)
    path = node_run / EDGES_DIR / EDGE_CIRCUIT_FILE
    assert main(["export", str(path), "--format", "tl-hooks"]) == 2
    assert "eap-ig or mib only" in capsys.readouterr().err


def test_the_mib_submission_of_a_run_with_an_edge_circuit_ranks_by_its_edge_gates(
    node_run, tmp_path, capsys
):
    from nodeprune.edges.export import eap_edge_gates, edge_eap_graph
    from nodeprune.export_mib import EDGE_RULES, IMPORTANCE_FILE, order_decided_sizes

    edges = _edge_circuit(node_run)
    capsys.readouterr()
    assert main(["export", str(node_run), "--format", "mib", "--mib-task", "ioi",
                 "--mib-model", "interpbench", "--out", str(tmp_path),
                 "--no-attribution"]) == 0  # fmt: skip
    assert "edge gates: the edge circuit in" in capsys.readouterr().err
    doc = json.loads((tmp_path / "ioi_interpbench" / IMPORTANCE_FILE).read_text())
    assert doc["metadata"]["ranking_rules"] == list(EDGE_RULES)
    # On this run no cutoff is left to EAP-IG's order even without the edge attribution
    # (without the edge circuit, the q/k/v edges of a head tie on everything the node
    # gates learn).
    assert order_decided_sizes(doc) == []
    # The circuit in the file is the edge circuit (as its own EAP-IG export has it), and
    # MIB's top-n at its size takes exactly it.
    own = edge_eap_graph(edges)
    inside = {n for n, e in own["edges"].items() if e["in_graph"]}
    assert {n for n, e in doc["edges"].items() if e["in_graph"]} == inside
    ranked = sorted(doc["edges"], key=lambda n: -doc["edges"][n]["score"])
    assert set(ranked[: len(inside)]) == inside
    # Among the candidate edges (both ends kept) of one membership, a higher edge gate
    # ranks higher: the gates, not EAP-IG's order, tell a head's q/k/v inputs apart.
    gates = eap_edge_gates(edges)
    for kept in (True, False):
        group = [n for n in ranked if n in gates and gates[n][0] is kept]
        values = [gates[n][1] for n in group]
        assert values == sorted(values, reverse=True)
    # The same submission from the edge circuit file itself.
    again = tmp_path / "again"
    path = node_run / EDGES_DIR / EDGE_CIRCUIT_FILE
    assert main(["export", str(path), "--format", "mib", "--mib-task", "ioi",
                 "--mib-model", "interpbench", "--out", str(again),
                 "--no-attribution"]) == 0  # fmt: skip
    redo = json.loads((again / "ioi_interpbench" / IMPORTANCE_FILE).read_text())
    assert redo["edges"] == doc["edges"]


def test_an_edge_circuit_of_another_node_circuit_is_not_used(node_run):
    from nodeprune.circuit import Circuit
    from nodeprune.edges.circuit import edge_circuit_for

    _edge_circuit(node_run)
    circuit = Circuit.load(node_run / CIRCUIT_FILE)
    assert edge_circuit_for(circuit, node_run)[0] is not None
    head = circuit.masks["attention_head"]
    head.view(-1)[0] = ~head.view(-1)[0]  # another circuit: one head in or out
    edges, why = edge_circuit_for(circuit, node_run)
    assert edges is None and "another node circuit" in why


def test_edges_curve_scores_the_top_edges_at_mibs_sizes(node_run, capsys):
    from nodeprune.edges.curve import top_k
    from nodeprune.edges.graph import EdgeGraph
    from nodeprune.metrics.cmd import cmd
    from nodeprune.metrics.cpr import cpr
    from nodeprune.run_files import EDGE_CURVE_FILE

    argv = ["edges", str(node_run), "--steps", "3", "--quiet", "--overwrite", "--curve"]
    assert main([*argv, "--batch-size", "8"]) == 0
    assert "edge curve: CPR" in capsys.readouterr().out
    curve = json.loads((node_run / EDGES_DIR / EDGE_CURVE_FILE).read_text())
    result = EdgeCircuit.load(node_run / EDGES_DIR / EDGE_CIRCUIT_FILE)
    n_model = EdgeGraph.full(result.node.dims).n_edges
    assert curve["model_edges"] == n_model and curve["candidate_edges"] == len(result.kept)
    points = curve["points"]
    edges = [p["edges"] for p in points]
    assert edges == sorted(set(edges)) and edges[-1] == len(result.kept)
    assert all(p["fraction_of_model_edges"] == p["edges"] / n_model for p in points)
    # The last point keeps every candidate edge: the node circuit's implied edges, which
    # score as the node circuit does (on the same test prompts).
    assert points[-1]["kl"] == pytest.approx(result.node.metrics["kl"], rel=1e-4, abs=1e-6)
    finite = [p for p in points if p["normalized_faithfulness"] == p["normalized_faithfulness"]]
    xs = [p["fraction_of_model_edges"] for p in finite]
    ys = [p["normalized_faithfulness"] for p in finite]
    assert curve["area"]["cpr"] == pytest.approx(cpr(xs, ys))
    assert curve["area"]["cmd"] == pytest.approx(cmd(xs, ys))
    # Top-k sets are nested: each size keeps the most open edges.
    a, b = top_k(result.log_alpha, 3), top_k(result.log_alpha, 7)
    assert int(a.sum()) == 3 and bool((b | a).eq(b).all())
    assert result.log_alpha[a].min() >= result.log_alpha[~a].max()
