"""The real offline default model: a few discovery steps end to end (slow)."""

from __future__ import annotations

import pytest

from nodeprune import Circuit, Discovery, DiscoveryConfig
from nodeprune.workbench import evaluate_circuit

pytestmark = pytest.mark.slow


def test_smollm2_layout(smollm2):
    d = smollm2.dims
    assert (d.n_layers, d.n_heads, d.n_kv_heads, d.head_dim, d.d_mlp) == (30, 9, 3, 64, 1536)


def test_few_discovery_steps(smollm2, tmp_path):
    cfg = DiscoveryConfig(steps=3, n_train=16, n_val=0, n_test=16, batch_size=8)
    discovery = Discovery(smollm2, cfg)
    # The model answers IOI: filtering keeps most examples.
    assert discovery.data.counts["train"]["kept"] >= 12
    circuit = discovery.run(progress=False)
    assert circuit.metrics["logit_diff_full"] > 1.0
    path = circuit.save(tmp_path / "circuit.json")
    again = evaluate_circuit(smollm2, Circuit.load(path))
    for key, value in circuit.metrics.items():
        assert abs(again[key] - value) < 1e-4, key
