"""An exported circuit scores as nodeprune's own: each export is read back (the EAP-IG
graph with EAP-IG's layout rules, the TransformerLens hooks as listed), turned into gates
on the nodes it names, and evaluated with nodeprune's GatedModel on the circuit's test
prompts; the metrics must equal those of the circuit as saved."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config, tiny_discovery_config
from eap_reader import read_eap_graph
from transformers import GPT2LMHeadModel

from nodeprune.circuit import Circuit, full_masks, make_consistent
from nodeprune.export import eap_graph, tl_hooks
from nodeprune.models import wrap_model
from nodeprune.workbench import evaluate_circuit

KEYS = ("logit_diff", "kl", "normalized_faithfulness")
EAP_GRANULARITIES = ("embedding", "attention_head", "mlp_block", "mlp_output")
TL_GRANULARITIES = (
    "embedding",
    "attention_head",
    "attention_neuron",
    "mlp_block",
    "mlp_neuron",
    "mlp_output",
)


@pytest.fixture(scope="module")
def gpt2(tokenizer):
    # Larger random weights than GPT-2's init, so that every node moves the logits.
    torch.manual_seed(0)
    config = tiny_config("gpt2")
    config.initializer_range = 0.3
    return wrap_model(GPT2LMHeadModel(config), tokenizer, "tiny-gpt2")


def _saved(loaded, tmp_path, enabled: list[str], ablation: str, prune) -> Circuit:
    dims = loaded.dims
    masks = full_masks(dims)
    prune(masks)
    cfg = tiny_discovery_config(
        granularities=enabled, ablation=ablation, n_train=16, n_test=16, filter=False
    )
    circuit = Circuit(
        loaded.name, "ioi", ablation, 0, dims, make_consistent(masks, enabled), enabled,
        config=cfg.to_dict(),
    )  # fmt: skip
    return Circuit.load(circuit.save(tmp_path / "circuit.json"))


def _with_masks(circuit: Circuit, granularities: tuple[str, ...], masks: dict) -> Circuit:
    """The circuit gated on ``granularities`` with ``masks``. The embedding is gated
    only where the circuit gates it: the fully ablated baseline of the normalized
    faithfulness closes every gated granularity, so it must close the same nodes."""
    enabled = [g for g in granularities if g != "embedding" or g in circuit.enabled]
    full = full_masks(circuit.dims)
    full.update({g: masks[g] for g in enabled})
    return Circuit(
        circuit.model, circuit.task, circuit.ablation, circuit.seed, circuit.dims, full,
        enabled, config=circuit.config,
    )  # fmt: skip


def masks_from_eap(doc: dict, dims) -> dict[str, torch.Tensor]:
    read = read_eap_graph(doc)
    masks = full_masks(dims)
    masks["embedding"][0] = read.kept("input")
    for i in range(dims.n_layers):
        for h in range(dims.n_heads):
            masks["attention_head"][i, h] = read.kept(f"a{i}.h{h}")
        masks["mlp_block"][i] = read.kept(f"m{i}")
        if read.neurons_in_graph is not None:
            masks["mlp_output"][i] = torch.from_numpy(read.neurons(f"m{i}").copy())
    return {g: masks[g] for g in EAP_GRANULARITIES}


def masks_from_tl(doc: dict, dims) -> dict[str, torch.Tensor]:
    masks = {g: torch.zeros_like(m) for g, m in full_masks(dims).items()}
    masks["mlp_output"][:] = True  # listed only where some output dimensions are pruned
    for e in doc["nodes"]:
        if e["node"] == "input":
            masks["embedding"][0] = True
        elif "head" in e:
            masks["attention_head"][e["layer"], e["head"]] = True
            masks["attention_neuron"][e["layer"], e["head"], e["dims"]] = True
        elif "neurons" in e:
            masks["mlp_block"][e["layer"]] = True
            masks["mlp_neuron"][e["layer"], e["neurons"]] = True
        else:
            masks["mlp_output"][e["layer"]] = False
            masks["mlp_output"][e["layer"], e["dims"]] = True
    return {g: masks[g] for g in TL_GRANULARITIES}


def _prune_blocks(masks):  # the case: blocks gated, heads not
    masks["attention_block"][1] = False
    masks["mlp_block"][0] = False


def _prune_layer(masks):
    masks["layer"][1] = False
    masks["attention_head"][0, 2] = False


def _prune_outputs(masks):
    masks["attention_head"][0, 3] = False  # the last head of its layer
    masks["mlp_output"][0, :7] = False


def _prune_everything(masks):
    masks["layer"][1] = False
    masks["attention_head"][0, 1] = False
    masks["attention_neuron"][0, 0, :3] = False
    masks["mlp_neuron"][0, ::2] = False
    masks["mlp_output"][0, 5:9] = False


#: name: (granularities, pruning, whether EAP-IG's graph says it all without neurons)
CASES = {
    "blocks": (["attention_block", "mlp_block"], _prune_blocks, True),
    "layer": (["layer", "attention_head"], _prune_layer, True),
    # Pruned MLP output dimensions are EAP-IG neurons: only --neurons exports them.
    "outputs": (["attention_head", "mlp_block", "mlp_output"], _prune_outputs, False),
}


def _assert_same(got: dict, want: dict) -> None:
    for key in KEYS:
        assert got[key] == pytest.approx(want[key], abs=1e-5, nan_ok=True), key


@pytest.mark.parametrize("ablation", ["corrupted", "mean"])
@pytest.mark.parametrize("case", list(CASES))
def test_exports_score_as_the_circuit(gpt2, tmp_path, case, ablation):
    enabled, prune, nodes_suffice = CASES[case]
    circuit = _saved(gpt2, tmp_path, enabled, ablation, prune)
    own = evaluate_circuit(gpt2, circuit)
    # The test can fail: the nodes that the raw (loaded) masks keep score differently.
    nodes = ("embedding", "attention_head", "mlp_block")
    raw = {g: circuit.masks[g] for g in nodes}
    naive = evaluate_circuit(gpt2, _with_masks(circuit, nodes, raw))
    assert abs(naive["kl"] - own["kl"]) > 0.01 * max(naive["kl"], own["kl"])

    for neurons in (False, True) if nodes_suffice else (True,):
        doc = eap_graph(circuit, neurons=neurons)
        exported = _with_masks(circuit, EAP_GRANULARITIES, masks_from_eap(doc, gpt2.dims))
        _assert_same(evaluate_circuit(gpt2, exported), own)
    exported = _with_masks(circuit, TL_GRANULARITIES, masks_from_tl(tl_hooks(circuit), gpt2.dims))
    _assert_same(evaluate_circuit(gpt2, exported), own)


def test_tl_hooks_score_as_a_circuit_gated_everywhere(gpt2, tmp_path):
    enabled = ["layer", "attention_block", "attention_head", "attention_neuron", "mlp_block",
               "mlp_neuron", "mlp_output"]  # fmt: skip
    circuit = _saved(gpt2, tmp_path, enabled, "corrupted", _prune_everything)
    own = evaluate_circuit(gpt2, circuit)
    exported = _with_masks(circuit, TL_GRANULARITIES, masks_from_tl(tl_hooks(circuit), gpt2.dims))
    _assert_same(evaluate_circuit(gpt2, exported), own)
