"""Routed experts as nodes: where the granularities exist, what a dense model's files and
refusals look like, the consistency rule of a mixture-of-experts MLP block, and an
MoE circuit reported per layer. (The patching equivalence of each expert node is in
tests/architectures/test_conformance.py.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_discovery_config

from nodeprune import Discovery
from nodeprune.ablator import Ablator
from nodeprune.architectures.base import ModelDims
from nodeprune.circuit import Circuit, full_masks, make_consistent
from nodeprune.errors import NodepruneError
from nodeprune.granularity import (
    DEFAULT_GRANULARITIES,
    GRANULARITIES,
    check_granularity_names,
    granularities_for_model,
)
from nodeprune.intervention import GatedModel
from nodeprune.summary import circuit_summary

sys.path.insert(0, str(Path(__file__).parent / "architectures"))
from test_intervention import _batch, _open_gates  # noqa: E402
from tiny_models import ROWS, build  # noqa: E402

DENSE = ModelDims(n_layers=2, n_heads=2, head_dim=3, d_model=4, d_mlp=5, n_kv_heads=2)
ROUTED_ONLY = ModelDims(2, 2, 3, 4, 0, 2, n_experts=3, d_expert=6)
WITH_SHARED = ModelDims(2, 2, 3, 4, 5, 2, n_experts=3, d_expert=6)
EXPERT_GRANULARITIES = ["expert", "expert_neuron"]


def _row(row_id: str):
    return next(r for r in ROWS if r.id == row_id)


def test_dense_models_lack_the_expert_granularities_and_all_still_works():
    everything = check_granularity_names(["all"])
    assert set(EXPERT_GRANULARITIES) <= set(everything)
    fitted = granularities_for_model(everything, DENSE)
    assert fitted == [g for g in everything if g not in EXPERT_GRANULARITIES]
    assert granularities_for_model(DEFAULT_GRANULARITIES, DENSE) == list(DEFAULT_GRANULARITIES)


@pytest.mark.parametrize("name", EXPERT_GRANULARITIES)
def test_naming_an_expert_granularity_on_a_dense_model_is_refused(name):
    with pytest.raises(NodepruneError, match=rf"no {name} nodes: it is a dense model") as err:
        granularities_for_model(["attention_head", name], DENSE)
    assert "out of --granularities" in str(err.value) and "\n" not in str(err.value)


def test_dense_mlp_neurons_are_refused_where_the_mlp_is_only_routed_experts():
    with pytest.raises(NodepruneError, match="only routed experts"):
        granularities_for_model(["mlp_neuron"], ROUTED_ONLY)
    # The default set gates the experts there instead of the missing dense neurons.
    fitted = granularities_for_model(DEFAULT_GRANULARITIES, ROUTED_ONLY)
    assert "mlp_neuron" not in fitted and set(EXPERT_GRANULARITIES) <= set(fitted)
    assert "mlp_neuron" in granularities_for_model(DEFAULT_GRANULARITIES, WITH_SHARED)


def test_a_discovery_on_a_dense_model_refuses_experts(llama_model):
    cfg = tiny_discovery_config(steps=1, n_train=4, n_test=4, granularities=["expert"])
    with pytest.raises(NodepruneError, match="no expert nodes"):
        Discovery(llama_model, cfg)


def test_a_dense_circuit_file_is_as_before(tmp_path):
    enabled = list(DEFAULT_GRANULARITIES)
    c = Circuit("tiny", "ioi", "corrupted", 0, DENSE, full_masks(DENSE), enabled)
    c.save(tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    assert set(data["model_dims"]) == {
        "n_layers", "n_heads", "head_dim", "d_model", "d_mlp", "n_kv_heads"
    }  # fmt: skip
    assert not set(EXPERT_GRANULARITIES) & set(data["granularities"])
    assert Circuit.load(tmp_path / "c.json").dims == DENSE  # missing sizes read as 0


def test_a_moe_circuit_file_round_trips_with_its_expert_sizes(tmp_path):
    masks = full_masks(ROUTED_ONLY)
    masks["expert"][1, 2] = False
    enabled = ["mlp_block", "expert", "expert_neuron"]
    c = Circuit("tiny", "ioi", "corrupted", 0, ROUTED_ONLY, masks, enabled)
    c.save(tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["model_dims"]["n_experts"] == 3 and data["model_dims"]["d_expert"] == 6
    assert data["granularities"]["expert"]["per_layer"] == [3, 2]
    assert data["granularities"]["expert_neuron"]["per_layer"] == [18, 12]
    assert "mlp_neuron" not in data["granularities"]
    back = Circuit.load(tmp_path / "c.json")
    assert back.dims == ROUTED_ONLY and torch.equal(back.masks["expert"], masks["expert"])
    del data["model_dims"]["d_expert"]  # one expert size without the other
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(NodepruneError, match="n_experts and d_expert"):
        Circuit.load(tmp_path / "bad.json")


def test_an_expert_with_every_neuron_pruned_is_pruned_and_all_experts_prune_the_block():
    masks = full_masks(ROUTED_ONLY)
    masks["expert_neuron"][0, 1] = False
    enabled = ["mlp_block", "expert", "expert_neuron"]
    out = make_consistent(masks, enabled)
    assert not out["expert"][0, 1] and out["expert"][0, 0] and out["mlp_block"][0]
    masks["expert"][1] = False
    out = make_consistent(masks, enabled)
    assert not out["mlp_block"][1] and out["mlp_block"][0]


def test_a_shared_expert_and_the_routed_experts_are_parts_of_one_block():
    """Qwen2-MoE: the block is pruned only when its shared-expert neurons and its
    routed experts all are."""
    enabled = ["mlp_block", "mlp_neuron", "expert"]
    masks = full_masks(WITH_SHARED)
    masks["mlp_neuron"][0] = False
    assert make_consistent(masks, enabled)["mlp_block"][0]
    masks["expert"][1] = False
    assert make_consistent(masks, enabled)["mlp_block"][1]
    masks["expert"][0] = False
    out = make_consistent(masks, enabled)
    assert not out["mlp_block"][0] and out["mlp_block"][1]
    # A part that is not gated keeps the block.
    assert make_consistent(masks, ["mlp_block", "mlp_neuron"])["mlp_block"].all()


def test_the_experts_implementation_does_not_matter(tokenizer):
    """The hook calls the stock module, so the eager loop and the grouped matmul
    gate an expert alike."""
    loaded = build(_row("mixtral"), tokenizer)
    batch = _batch(loaded)
    gates = _open_gates(loaded)
    gates["expert"][0, 1] = 0.0
    gates["expert_neuron"][1, 2, :5] = 0.3
    got = {}
    for implementation in ("eager", "grouped_mm"):
        loaded.model.config._experts_implementation = implementation
        gated = GatedModel(loaded)
        try:
            ablator = Ablator("corrupted", gated)
            got[implementation] = gated.gated_logits(
                batch.clean_ids, batch.attention_mask, batch.answer_pos, gates,
                ablator.values(batch),
            )  # fmt: skip
        finally:
            gated.remove()
    plain = loaded.model(input_ids=batch.clean_ids, attention_mask=batch.attention_mask).logits
    assert (got["eager"] - plain[torch.arange(len(plain)), batch.answer_pos]).abs().max() > 1e-3
    torch.testing.assert_close(got["eager"], got["grouped_mm"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("row_id", ["mixtral", "qwen2_moe"])
def test_a_moe_circuit_reports_its_experts_per_layer(row_id, tokenizer):
    loaded = build(_row(row_id), tokenizer)
    cfg = tiny_discovery_config(steps=30, n_train=16, n_test=8, lam=0.1, lr=0.5, seed=0)
    circuit = Discovery(loaded, cfg).run(progress=False)
    assert set(EXPERT_GRANULARITIES) <= set(circuit.enabled)
    assert ("mlp_neuron" in circuit.enabled) == (row_id == "qwen2_moe")
    counts = circuit.granularities()
    n_layers, n_experts = loaded.dims.n_layers, loaded.dims.n_experts
    assert counts["expert"]["total"] == n_layers * n_experts
    assert len(counts["expert"]["per_layer"]) == n_layers
    assert sum(counts["expert"]["per_layer"]) == counts["expert"]["kept"]
    assert 0 < counts["expert_neuron"]["kept"] < counts["expert_neuron"]["total"]
    text = circuit_summary(circuit)
    assert "routed experts kept, per layer:" in text
    for layer, kept in enumerate(counts["expert"]["per_layer"]):
        assert any(
            line.split()[:2] == [str(layer), f"{kept}/{n_experts}"] for line in text.splitlines()
        )


def test_the_summary_of_a_dense_circuit_has_no_expert_rows():
    enabled = list(DEFAULT_GRANULARITIES)
    circuit = Circuit("tiny", "ioi", "corrupted", 0, DENSE, full_masks(DENSE), enabled)
    text = circuit_summary(circuit)
    assert "expert" not in text
    assert all(g in text for g in GRANULARITIES if not g.startswith("expert"))


def test_the_report_lists_and_draws_the_experts():
    from nodeprune.reports.build import _overview
    from nodeprune.reports.figures_circuit import LAYERED, kept_fraction_per_layer

    masks = full_masks(WITH_SHARED)
    masks["expert"][0, 0] = False
    enabled = ["mlp_block", "mlp_neuron", "expert", "expert_neuron"]
    circuit = Circuit("tiny", "ioi", "corrupted", 0, WITH_SHARED, masks, enabled)
    overview = _overview(circuit)
    assert "<td>expert</td>" in overview and "<td>expert_neuron</td>" in overview
    assert {"expert", "expert_neuron"} <= set(LAYERED)  # rows of the per-layer heat map
    assert kept_fraction_per_layer(circuit).png
    dense = Circuit("tiny", "ioi", "corrupted", 0, DENSE, full_masks(DENSE), ["mlp_neuron"])
    assert "expert" not in _overview(dense)
