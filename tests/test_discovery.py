"""The discovery loop on tiny models: the loss goes down, the circuit is consistent
and its saved metrics are the ones a fresh evaluation recomputes."""

from __future__ import annotations

import json
import math

import torch
from conftest import tiny_discovery_config

from nodeprune import Circuit, Discovery
from nodeprune.circuit import make_consistent
from nodeprune.summary import circuit_summary
from nodeprune.workbench import evaluate_circuit


def _config(**kw):
    return tiny_discovery_config(**{"steps": 30, "n_train": 24, "n_test": 12, "lr": 0.1, **kw})


def test_short_run_lowers_the_loss(family_model):
    # A fixed sparsity weight (no warm-up), so losses at different steps are comparable.
    d = Discovery(family_model, _config(sparsity_warmup=0.0, steps=40))
    d.run(progress=False)
    losses = [h.loss for h in d.history]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_circuit_is_consistent_and_evaluation_reproduces(llama_model, tmp_path):
    d = Discovery(llama_model, _config(lr=0.3, steps=25))
    circuit = d.run(progress=False)
    again = make_consistent(circuit.masks, circuit.enabled)
    for g in circuit.masks:
        assert torch.equal(again[g], circuit.masks[g])
    path = circuit.save(tmp_path / "circuit.json")
    loaded = Circuit.load(path)
    metrics = evaluate_circuit(llama_model, loaded)
    for key, value in circuit.metrics.items():
        # A random model's faithfulness is undefined (nan): then it must be so again.
        same = math.isnan(value) and math.isnan(metrics[key])
        assert same or abs(metrics[key] - value) < 1e-5, key


def test_same_seed_same_circuit(llama_model):
    a = Discovery(llama_model, _config(steps=10, seed=5)).run(progress=False)
    b = Discovery(llama_model, _config(steps=10, seed=5)).run(progress=False)
    assert all(torch.equal(a.masks[g], b.masks[g]) for g in a.masks)


def test_only_enabled_granularities_are_trained(llama_model):
    d = Discovery(llama_model, _config(granularities=["attention_head", "mlp_block"], steps=3))
    circuit = d.run(progress=False)
    assert d.gates.log_alpha.numel() == 2 * 4 + 2
    assert circuit.enabled == ["mlp_block", "attention_head"]
    assert circuit.granularities()["mlp_neuron"]["enabled"] is False


def test_bf16_autocast_trains_like_fp32(llama_model):
    """Autocast runs the training passes in bf16: the loss still falls, the gate
    gradients point the same way as in fp32, and evaluation stays in fp32."""
    from nodeprune.intervention import GatedModel

    runs = {}
    for mode in ("off", "bfloat16"):
        d = Discovery(llama_model, _config(autocast=mode, steps=1))
        seen = []
        hook = GatedModel._apply

        def spy(self, key, x, _hook=hook, _seen=seen):
            _seen.append(x.dtype)
            return _hook(self, key, x)

        GatedModel._apply = spy
        try:
            d.train_step()
        finally:
            GatedModel._apply = hook
        runs[mode] = (d.gates.log_alpha.detach().clone(), set(seen))
    (fp32, fp32_dtypes), (bf16, bf16_dtypes) = runs["off"], runs["bfloat16"]
    assert fp32_dtypes == {torch.float32} and torch.bfloat16 in bf16_dtypes
    start = Discovery(llama_model, _config(steps=1)).gates.log_alpha.detach()
    moved32, moved16 = fp32 - start, bf16 - start
    cosine = torch.nn.functional.cosine_similarity(moved32, moved16, dim=0)
    assert cosine > 0.9, cosine
    d = Discovery(llama_model, _config(autocast="bfloat16", steps=20, sparsity_warmup=0.0))
    circuit = d.run(progress=False)
    losses = [h.loss for h in d.history]
    assert sum(losses[-5:]) < sum(losses[:5])
    again = evaluate_circuit(llama_model, circuit)
    # nan (an undefined faithfulness on a random model) must be nan again.
    assert json.dumps(circuit.metrics, sort_keys=True) == json.dumps(again, sort_keys=True)


def test_validation_measurements_run_in_the_training_precision(llama_model):
    """Under autocast the controller's and the selection's validation passes are mixed
    precision too, the test scores are not, and the circuit file says which it was."""
    from nodeprune.intervention import GatedModel

    d = Discovery(
        llama_model,
        _config(autocast="bfloat16", steps=4, target_every=2, target_kl=0.5, n_val=12),
    )
    assert d.autocast == "bfloat16"
    seen: dict[str, set] = {"measure": set(), "test": set()}
    phase = ["train"]
    hook = GatedModel._apply

    def spy(self, key, x, _hook=hook):
        seen.setdefault(phase[0], set()).add(x.dtype)
        return _hook(self, key, x)

    measure, final = Discovery._measure_target, Discovery.final_masks

    def spy_measure(self):
        phase[0] = "measure"
        try:
            return measure(self)
        finally:
            phase[0] = "train"

    def spy_final(self):
        phase[0] = "measure"
        try:
            return final(self)
        finally:
            phase[0] = "test"

    GatedModel._apply = spy
    Discovery._measure_target, Discovery.final_masks = spy_measure, spy_final
    try:
        circuit = d.run(progress=False)
    finally:
        GatedModel._apply = hook
        Discovery._measure_target, Discovery.final_masks = measure, final
    assert torch.bfloat16 in seen["measure"]
    assert seen["test"] == {torch.float32}
    assert circuit.extra["autocast"] == "bfloat16"
    assert "bfloat16 autocast" in circuit_summary(circuit)
    plain = Discovery(llama_model, _config(steps=1)).run(progress=False)
    assert plain.extra["autocast"] == "off" and "autocast" not in circuit_summary(plain)
