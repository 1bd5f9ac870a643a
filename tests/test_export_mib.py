"""The MIB circuit-track submission: folder layout, the edges at each of MIB's sizes, no
ties that decide which edges are in, and the BOS record."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from eap_reader import read_eap_graph
from safetensors.torch import save_file

from nodeprune.architectures.base import ModelDims
from nodeprune.checkpoint import TENSORS_FILE
from nodeprune.circuit import Circuit, full_masks, make_consistent
from nodeprune.cli import main
from nodeprune.errors import NodepruneError
from nodeprune.export import BOS_KEY, eap_graph, prompts_start_with_bos, write_export
from nodeprune.export_mib import (
    MIB_EDGE_FRACTIONS,
    RULES,
    final_log_alphas,
    mib_graph,
    order_decided_sizes,
)
from nodeprune.granularity import GRANULARITIES

GPT2 = ModelDims(n_layers=12, n_heads=12, head_dim=64, d_model=768, d_mlp=3072, n_kv_heads=12)
TINY = ModelDims(n_layers=2, n_heads=2, head_dim=3, d_model=4, d_mlp=5, n_kv_heads=2)
ENABLED = ["attention_block", "mlp_block", "attention_head", "attention_neuron", "mlp_neuron"]


def _log_alphas(dims: ModelDims, seed: int = 0) -> dict[str, torch.Tensor]:
    """Final log-alphas as a run leaves them: many saturated at the clamp (+-10), which
    is where node scores tie."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in ENABLED:
        shape = GRANULARITIES[name].shape(dims)
        la = torch.where(torch.rand(shape, generator=g) < 0.6, 10.0, -10.0)
        noisy = torch.rand(shape, generator=g) < 0.3
        out[name] = torch.where(noisy, 4 * torch.randn(shape, generator=g), la)
    out["attention_block"][:] = 10.0
    out["mlp_block"][:] = 10.0
    return out


def _circuit(dims: ModelDims, log_alphas: dict, model: str = "gpt2", **extra) -> Circuit:
    masks = full_masks(dims)
    masks.update({g: la > 0 for g, la in log_alphas.items()})
    scores = {g: log_alphas[g].tolist() for g in ("attention_block", "mlp_block", "attention_head")}
    return Circuit(
        model, "ioi", "corrupted", 0, dims, make_consistent(masks, ENABLED), ENABLED,
        extra={"scores": scores, **extra},
    )  # fmt: skip


@pytest.fixture(scope="module")
def gpt2_run():
    la = _log_alphas(GPT2)
    return _circuit(GPT2, la), la


def _ranked(doc: dict) -> list[str]:
    """Edge names best first, as MIB's top-n takes them (descending score)."""
    names = list(doc["edges"])
    scores = np.array([doc["edges"][n]["score"] for n in names], dtype=np.float32)
    return [names[i] for i in np.argsort(-scores, kind="stable")]


def test_the_submission_folder_holds_one_importance_file(gpt2_run, tmp_path):
    circuit, la = gpt2_run
    path = write_export(circuit, "mib", tmp_path / "nodeprune", log_alphas=la)
    assert path == tmp_path / "nodeprune" / "ioi_gpt2" / "importances.json"
    assert [p.name for p in path.parent.iterdir()] == ["importances.json"]
    doc = json.loads(path.read_text())
    assert doc["cfg"] == {"n_layers": 12, "n_heads": 12, "parallel_attn_mlp": False,
                          "d_model": 768}  # fmt: skip
    # The same nodes and edges as EAP-IG's graph of GPT-2 small (32,491 edges).
    plain = eap_graph(circuit)
    assert list(doc["edges"]) == list(plain["edges"]) and len(doc["edges"]) == 32491
    assert list(doc["nodes"]) == list(plain["nodes"])
    read = read_eap_graph(doc)  # loads under EAP-IG's layout rules
    assert read.node_scores is not None and read.neurons_in_graph is None


def test_no_ties_decide_the_edges_at_any_of_mibs_sizes(gpt2_run):
    circuit, la = gpt2_run
    doc = mib_graph(circuit, log_alphas=la)[1]
    scores = np.array([e["score"] for e in doc["edges"].values()])
    n = len(scores)
    # Distinct even as float32, which EAP-IG loads them into: MIB's top-n is unique.
    assert len(np.unique(scores.astype(np.float32))) == n and scores.min() > 0
    ordered = np.sort(scores.astype(np.float32))[::-1]
    for fraction in MIB_EDGE_FRACTIONS[:-1]:
        k = int(fraction * n)
        assert ordered[k - 1] > ordered[k]
    # The order ties in the plain node-derived scores that it had to break.
    plain = np.array([e["score"] for e in eap_graph(circuit)["edges"].values()])
    assert len(np.unique(plain)) < n / 10
    cutoffs = doc["metadata"]["cutoffs"]
    assert [c["fraction"] for c in cutoffs] == list(MIB_EDGE_FRACTIONS)
    assert [c["edges"] for c in cutoffs] == [int(f * n) for f in MIB_EDGE_FRACTIONS]
    assert {c["decided_by"] for c in cutoffs} <= {
        None, "membership", "node gates", "neuron gates", "EAP-IG order"
    }  # fmt: skip


def test_mibs_circuit_at_the_circuits_size_is_the_circuit(gpt2_run):
    circuit, la = gpt2_run
    doc = mib_graph(circuit, log_alphas=la)[1]
    inside = {n for n, e in doc["edges"].items() if e["in_graph"]}
    assert 0 < len(inside) < len(doc["edges"])
    assert doc["metadata"]["circuit_edges"] == len(inside)
    assert set(_ranked(doc)[: len(inside)]) == inside
    kept_nodes = {n for n, v in doc["nodes"].items() if v["in_graph"] and n != "logits"}
    by_score = sorted(kept_nodes | set(doc["nodes"]) - {"logits"},
                      key=lambda n: -doc["nodes"][n]["score"])  # fmt: skip
    assert set(by_score[: len(kept_nodes)]) == kept_nodes


def test_neuron_gates_order_edges_that_node_scores_tie():
    la = _log_alphas(TINY)
    la["attention_head"][:] = 10.0
    la["attention_neuron"][:] = 10.0
    la["attention_neuron"][1, 0] = torch.tensor([10.0, 0.5, -3.0])  # a1.h0 half open
    la["mlp_neuron"][:] = 10.0
    circuit = _circuit(TINY, la, model="tiny")
    doc = mib_graph(circuit, log_alphas=la, mib_model="tiny")[1]
    edges = doc["edges"]
    # Equal node scores (all saturated): the head with pruned output dimensions writes
    # less to the residual stream, so its edges rank below its neighbour's.
    assert edges["a1.h1->logits"]["score"] > edges["a1.h0->logits"]["score"]
    assert edges["a0.h0->a1.h1<v>"]["score"] > edges["a0.h0->a1.h0<v>"]["score"]
    # Without the checkpoint's log-alphas the kept fraction (1/3 vs 3/3) still decides.
    doc = mib_graph(circuit, mib_model="tiny")[1]
    assert doc["edges"]["a1.h1->logits"]["score"] > doc["edges"]["a1.h0->logits"]["score"]
    assert doc["metadata"]["neuron_gates"].startswith("kept-neuron fractions")


def _checkpoint(folder, la: dict) -> None:
    flat = torch.cat([la[g].flatten() for g in GRANULARITIES if g in la])
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"gates.log_alpha": flat}, str(folder / TENSORS_FILE))


def test_the_final_log_alphas_come_from_the_run_that_found_the_circuit(tmp_path):
    la = _log_alphas(TINY)
    circuit = _circuit(TINY, la, model="tiny")
    _checkpoint(tmp_path / "run", la)
    got, why = final_log_alphas(circuit, tmp_path / "run")
    assert got is not None and all(torch.equal(got[g], la[g]) for g in ENABLED), why
    other = {g: -v for g, v in la.items()}
    _checkpoint(tmp_path / "other", other)
    got, why = final_log_alphas(circuit, tmp_path / "other")
    assert got is None and "do not give this circuit" in why
    assert final_log_alphas(circuit, tmp_path / "none") == (None, f"no {TENSORS_FILE} next to "
                                                           "the circuit")  # fmt: skip
    for damage in (b"", b"garbage", (tmp_path / "run" / TENSORS_FILE).read_bytes()[:-5]):
        (tmp_path / "other" / TENSORS_FILE).write_bytes(damage)
        got, why = final_log_alphas(circuit, tmp_path / "other")
        assert got is None and "not readable" in why


def test_the_files_say_whether_the_prompts_began_with_bos(gpt2_run):
    circuit, la = gpt2_run
    assert mib_graph(circuit)[1]["metadata"][BOS_KEY] is None  # not recorded
    circuit.extra[BOS_KEY] = False
    meta = mib_graph(circuit)[1]["metadata"]
    assert meta[BOS_KEY] is False and meta["eap_ig_prepends_bos"] is True
    assert eap_graph(circuit)["metadata"][BOS_KEY] is False
    del circuit.extra[BOS_KEY]


class _Tok:
    def __init__(self, bos):
        self.bos_token_id = bos


def test_bos_is_recorded_from_the_prompts_first_tokens():
    assert prompts_start_with_bos([1, 1, 1], _Tok(1))
    assert not prompts_start_with_bos([1, 7, 1], _Tok(1))
    assert not prompts_start_with_bos([1, 1], _Tok(None))  # GPT-2 style: no BOS added
    assert not prompts_start_with_bos([], _Tok(1))


def test_names_outside_mib_are_clear_errors(gpt2_run):
    circuit, _ = gpt2_run
    tiny = _circuit(TINY, _log_alphas(TINY), model="tiny")
    with pytest.raises(NodepruneError, match="--mib-model"):
        mib_graph(tiny)
    with pytest.raises(NodepruneError, match="MIB's gpt2 has 12 layers"):
        mib_graph(tiny, mib_model="gpt2")
    circuit.task = "greater_than"
    try:
        with pytest.raises(NodepruneError, match="--mib-task"):
            mib_graph(circuit)
        assert mib_graph(circuit, mib_task="greater_than")[0] == "greater-than_gpt2"
    finally:
        circuit.task = "ioi"


def test_cli_writes_the_submission_from_a_run_folder(tmp_path, capsys):
    la = _log_alphas(TINY)
    run = tmp_path / "run"
    _circuit(TINY, la, model="tiny", **{BOS_KEY: False}).save(run / "circuit.json")
    _checkpoint(run, la)
    argv = ["export", str(run), "--format", "mib", "--mib-model", "tiny", "--no-attribution"]
    assert main([*argv, "--out", str(tmp_path / "sub")]) == 0
    err = capsys.readouterr().err
    assert "final log-alphas" in err and "without one" in err
    doc = json.loads((tmp_path / "sub" / "ioi_tiny" / "importances.json").read_text())
    assert doc["metadata"]["neuron_gates"] == "final log-alphas (checkpoint)"
    assert doc["metadata"]["edge_attribution"] is None
    assert doc["metadata"]["ranking_rules"] == list(RULES)
    assert main(argv) == 2  # no --out: a folder is needed
    assert "--out FOLDER" in capsys.readouterr().err


def test_a_discovery_run_exports_with_its_checkpoint_and_bos_record(tiny_llama_dir, tmp_path):
    run = tmp_path / "run"
    fast = ["--steps", "4", "--n-train", "16", "--n-val", "0", "--n-test", "8", "--no-filter",
            "--batch-size", "8", "--eval-batch-size", "16", "--quiet"]  # fmt: skip
    assert main(["discover", "--model", str(tiny_llama_dir), "--out", str(run), *fast]) == 0
    circuit = Circuit.load(run / "circuit.json")
    assert circuit.extra[BOS_KEY] is False  # the test tokenizer adds no BOS token
    la, why = final_log_alphas(circuit, run)
    assert la is not None, why
    assert main(["export", str(run), "--format", "mib", "--mib-model", "tiny", "--mib-task", "ioi",
                 "--out", str(tmp_path / "sub")]) == 0  # fmt: skip
    doc = json.loads((tmp_path / "sub" / "ioi_tiny" / "importances.json").read_text())
    assert doc["metadata"][BOS_KEY] is False
    assert doc["metadata"]["neuron_gates"] == "final log-alphas (checkpoint)"
    # The edge attribution is on by default: the run's model, on its 16 train prompts
    # (fewer than the default 32).
    assert doc["metadata"]["edge_attribution"]["prompts"] == 16
    assert "edge attribution" in doc["metadata"]["ranking_rules"]


def test_export_ranks_by_the_runs_edge_attribution_end_to_end(tiny_llama_dir, tmp_path, capsys):
    from nodeprune.edges.attribution import circuit_attribution
    from nodeprune.export_mib import ATTRIBUTION_RULE

    run = tmp_path / "run"
    fast = ["--steps", "4", "--n-train", "16", "--n-val", "0", "--n-test", "8", "--no-filter",
            "--batch-size", "8", "--eval-batch-size", "16", "--quiet"]  # fmt: skip
    assert main(["discover", "--model", str(tiny_llama_dir), "--out", str(run), *fast]) == 0
    export = ["export", str(run), "--format", "mib", "--mib-model", "tiny", "--mib-task", "ioi"]
    out = tmp_path / "sub" / "ioi_tiny" / "importances.json"
    capsys.readouterr()
    assert main([*export, "--out", str(tmp_path / "sub"), "--attribution-prompts", "4"]) == 0
    assert "edge attribution: on 4 train prompts" in capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc["metadata"]["edge_attribution"]["prompts"] == 4
    assert doc["metadata"]["ranking_rules"][-2:] == [ATTRIBUTION_RULE, "EAP-IG order"]
    # The file is the export of the run's circuit with its model's attribution.
    circuit = Circuit.load(run / "circuit.json")
    la, _ = final_log_alphas(circuit, run)
    expected = mib_graph(circuit, log_alphas=la, mib_task="ioi", mib_model="tiny",
                         attribution=circuit_attribution(circuit, 4))[1]  # fmt: skip
    assert doc["edges"] == expected["edges"]
    # --no-attribution: today's order, no model loaded.
    assert main([*export, "--out", str(tmp_path / "sub"), "--no-attribution"]) == 0
    plain = json.loads(out.read_text())
    assert plain["metadata"]["edge_attribution"] is None
    assert plain["metadata"]["ranking_rules"] == list(RULES)
    assert plain["edges"] != doc["edges"]
    # A model that cannot be loaded: one line naming the opt-out.
    saved = json.loads((run / "circuit.json").read_text())
    saved["model"] = str(tmp_path / "gone")
    (run / "circuit.json").write_text(json.dumps(saved))
    capsys.readouterr()
    assert main([*export, "--out", str(tmp_path / "sub")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--no-attribution" in err and "gone" in err and len(err.splitlines()) == 1
    assert main([*export, "--out", str(tmp_path / "sub"), "--no-attribution"]) == 0


def test_edge_gates_leave_fewer_cutoffs_to_eap_igs_order(gpt2_run):
    # Edge gates as a run leaves them (many at the clamp): they tell a head's q/k/v
    # inputs apart where they differ; gates saturated alike still tie.
    from nodeprune.edges.circuit import EdgeCircuit
    from nodeprune.export_mib import EDGE_RULES, order_decided_sizes

    circuit, la = gpt2_run
    n = EdgeCircuit.implied(circuit).log_alpha.numel()
    g = torch.Generator().manual_seed(1)
    gates = torch.where(torch.rand(n, generator=g) < 0.5, 10.0, -10.0)
    noisy = torch.rand(n, generator=g) < 0.3
    gates = torch.where(noisy, 4 * torch.randn(n, generator=g), gates)
    edges = EdgeCircuit(circuit, gates > 0, gates)
    with_edges = mib_graph(circuit, log_alphas=la, edges=edges)[1]
    without = mib_graph(circuit, log_alphas=la)[1]
    assert with_edges["metadata"]["ranking_rules"] == list(EDGE_RULES)
    assert len(order_decided_sizes(with_edges)) < len(order_decided_sizes(without))
    rules = {c["decided_by"] for c in with_edges["metadata"]["cutoffs"]}
    assert "edge gates" in rules
    # The edge circuit is the circuit in the file.
    inside = {k for k, e in with_edges["edges"].items() if e["in_graph"]}
    assert len(inside) == with_edges["metadata"]["circuit_edges"] > 0


@pytest.fixture(scope="module")
def attributed_run(tokenizer):
    """The saturated-gate case above on a model with GPT-2 small's graph (12 layers of 12
    heads: the same 32,491 EAP-IG edges) but tiny widths, and that model's edge
    attribution."""
    from conftest import tiny_discovery_config
    from transformers import GPT2Config, GPT2LMHeadModel

    from nodeprune.edges.attribution import edge_attribution
    from nodeprune.models import wrap_model
    from nodeprune.workbench import Workbench

    torch.manual_seed(0)
    config = GPT2Config(n_layer=12, n_head=12, n_embd=48, n_positions=64, vocab_size=512)
    loaded = wrap_model(GPT2LMHeadModel(config), tokenizer, "tiny-gpt2-12x12")
    with Workbench.for_config(loaded, tiny_discovery_config(n_train=8, n_test=4)) as bench:
        attribution = edge_attribution(bench, prompts=8)
    la = _log_alphas(loaded.dims)
    return _circuit(loaded.dims, la, model="tiny"), la, attribution


def _decided(doc: dict) -> list:
    return [c["decided_by"] for c in doc["metadata"]["cutoffs"]]


def test_edge_attribution_decides_the_cutoffs_eap_igs_order_decided(attributed_run):
    from nodeprune.edges.circuit import EdgeCircuit
    from nodeprune.export_mib import ATTRIBUTION_RULE, EDGE_RULES

    circuit, la, attribution = attributed_run
    n = EdgeCircuit.implied(circuit).log_alpha.numel()
    g = torch.Generator().manual_seed(1)
    gates = torch.where(torch.rand(n, generator=g) < 0.5, 10.0, -10.0)
    edges = EdgeCircuit(circuit, gates > 0, gates)  # edge gates saturated alike: ties
    for rules, extra in ((RULES, {}), (EDGE_RULES, {"edges": edges})):
        plain = mib_graph(circuit, log_alphas=la, mib_model="tiny", **extra)[1]
        ranked = mib_graph(circuit, log_alphas=la, mib_model="tiny", attribution=attribution,
                           **extra)[1]  # fmt: skip
        assert plain["metadata"]["ranking_rules"] == list(rules)
        assert ranked["metadata"]["ranking_rules"] == [*rules[:-1], ATTRIBUTION_RULE, rules[-1]]
        # Without attribution EAP-IG's order decides some of MIB's sizes; with it, none.
        assert order_decided_sizes(plain)
        assert order_decided_sizes(ranked) == []
        # It decides exactly those, and the earlier rules keep every other cutoff.
        for before, after in zip(_decided(plain), _decided(ranked), strict=True):
            assert after == (ATTRIBUTION_RULE if before == rules[-1] else before)
        inside = {k for k, e in ranked["edges"].items() if e["in_graph"]}
        assert set(_ranked(ranked)[: len(inside)]) == inside
        meta = ranked["metadata"]["edge_attribution"]
        assert meta["prompts"] == 8 and meta["edges"] == len(ranked["edges"])
        assert "absolute value" in meta["score"] and plain["metadata"]["edge_attribution"] is None
    # Among edges the gates tie, the larger absolute attribution ranks first.
    ranked = mib_graph(circuit, log_alphas=la, mib_model="tiny", attribution=attribution)[1]
    q, k = "a3.h0->a5.h2<q>", "a3.h0->a5.h2<k>"  # one parent and head: equal gates
    first, second = sorted((q, k), key=lambda e: -abs(attribution.scores[e]))
    assert ranked["edges"][first]["score"] > ranked["edges"][second]["score"]


def test_an_attribution_of_the_other_graph_is_refused(attributed_run):
    from nodeprune.edges.attribution import EdgeAttribution

    circuit, la, attribution = attributed_run
    with pytest.raises(NodepruneError, match="pass --parallel-attn-mlp$"):
        other = EdgeAttribution(attribution.scores, 8, parallel=True)
        mib_graph(circuit, log_alphas=la, mib_model="tiny", attribution=other)
    fewer = EdgeAttribution(dict(list(attribution.scores.items())[1:]), 8, parallel=False)
    with pytest.raises(NodepruneError, match="no score for 1 edges"):
        mib_graph(circuit, log_alphas=la, mib_model="tiny", attribution=fewer)


def test_bad_mib_names_fail_before_any_model_is_loaded(tmp_path, capsys):
    # The circuit's model does not exist: the name error must come first, not the load.
    la = _log_alphas(TINY)
    run = tmp_path / "run"
    _circuit(TINY, la, model=str(tmp_path / "gone")).save(run / "circuit.json")
    assert main(["export", str(run), "--format", "mib", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "--mib-model" in err and "--no-attribution" not in err
