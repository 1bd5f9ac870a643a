"""A stopped comparison continues: every discovery's circuit is kept in the reuse folder
as soon as it is found, read back for the same configuration only, with its cost."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import tiny_discovery_config
from reports.tiny_ioi import trained_ioi_gpt2

from nodeprune import DiscoveryConfig
from nodeprune.circuit import Circuit
from nodeprune.compare import CompareOptions, Comparison
from nodeprune.compare_reuse import CONFIG_KEY, COST_KEY, SavedDiscoveries
from nodeprune.discovery import Discovery


def _config(**kw):
    base = {"steps": 12, "n_train": 32, "n_test": 32, "lr": 0.3, "n_val": 32}
    return tiny_discovery_config(**{**base, "target_faithfulness": 0.8, "target_every": 4, **kw})


def _run(loaded, cfg, folder, curve_targets=(0.6,)):
    options = CompareOptions(curve_targets=list(curve_targets), progress=False, reuse_dir=folder)
    with Comparison(loaded, cfg, options) as comparison:
        return comparison.run(methods=["multi-granular", "coarse"])


def test_a_second_comparison_reads_every_discovery_back(tokenizer, tmp_path, monkeypatch):
    loaded = trained_ioi_gpt2(tokenizer)
    first = _run(loaded, _config(), tmp_path)
    # Two methods, each at its target and at the curve target.
    files = sorted(tmp_path.glob("circuit-*.json"))
    assert len(files) == 4

    def no_training(self, *args, **kwargs):
        raise AssertionError("a saved discovery was trained again")

    monkeypatch.setattr(Discovery, "run", no_training)
    second = _run(loaded, _config(), tmp_path)
    for name in ("multi-granular", "coarse"):
        assert second.circuits[name].metrics == first.circuits[name].metrics
        assert second.curves[name] == first.curves[name]
        row = next(r for r in second.rows if r["method"] == name)
        before = next(r for r in first.rows if r["method"] == name)
        assert row["reused_from"].startswith(str(tmp_path))
        assert "reused_from" not in before
        # The table shows what the discovery cost when it ran, not the read-back.
        assert row["wall_s"] == pytest.approx(before["wall_s"], abs=1e-3)
        assert second.circuits[name].extra[COST_KEY]["wall_s"] == row["wall_s"]


def test_another_configuration_is_not_reused(tokenizer, tmp_path):
    loaded = trained_ioi_gpt2(tokenizer)
    _run(loaded, _config(), tmp_path, curve_targets=())
    saved = SavedDiscoveries(tmp_path)
    first = sorted(tmp_path.glob("circuit-*.json"))[0]
    kept_for = DiscoveryConfig.from_dict(Circuit.load(first).extra[CONFIG_KEY])
    assert saved.load(kept_for, loaded.name) is not None
    assert saved.load(kept_for, "another-model") is None
    other = dataclasses.replace(kept_for, seed=1)
    assert saved.path(other.to_dict()) != first
    assert saved.load(other, loaded.name) is None
    # A file under the right key but kept for another configuration is not trusted.
    first.rename(saved.path(other.to_dict()))
    assert saved.load(other, loaded.name) is None
