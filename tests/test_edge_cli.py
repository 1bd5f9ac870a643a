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


def test_edge_circuits_export_as_eap_ig_only(node_run, capsys):
    path = node_run / EDGES_DIR / EDGE_CIRCUIT_FILE
    if not path.exists():
        assert main(["edges", str(node_run), "--steps", "2", "--quiet"]) == 0
    assert main(["export", str(path), "--format", "tl-hooks"]) == 2
    assert "eap-ig only" in capsys.readouterr().err
