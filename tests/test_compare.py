"""``nodeprune compare`` on a tiny model: every method on the same prompts and reference,
the agreed compare.json / curves.json schema, sizes, and the central-claim numbers."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import tiny_discovery_config, tiny_model
from reports.tiny_ioi import trained_ioi_gpt2

from nodeprune import DiscoveryConfig
from nodeprune.baselines.attribution import ATTRIBUTION_GRANULARITIES
from nodeprune.cli import main
from nodeprune.compare import METHODS, CompareOptions, Comparison
from nodeprune.curves import effective_masks
from nodeprune.evaluation import METRIC_KEYS
from nodeprune.granularity import GRANULARITIES


def _config(**kw) -> DiscoveryConfig:
    return tiny_discovery_config(**{"steps": 12, "n_train": 32, "n_test": 32, "lr": 0.3, **kw})


@pytest.fixture(scope="module")
def result(tokenizer):
    # Trained on IOI, so that faithfulness is defined and every method has one to match.
    loaded = trained_ioi_gpt2(tokenizer)
    options = CompareOptions(
        random_draws=3, curve_lams=[0.5], curve_scales=[0.5], search_steps=3, progress=False
    )
    comparison = Comparison(loaded, _config(), options)
    try:
        yield comparison.run()
    finally:
        comparison.close()


def _rows(result, method):
    return [r for r in result.rows if r["method"] == method]


def test_compare_json_schema(result, tmp_path):
    result.save(tmp_path)
    rows = json.loads((tmp_path / "compare.json").read_text())
    assert {r["method"] for r in rows} == set(METHODS)
    for row in rows:
        # Every granularity a dense model has: no expert keys.
        assert set(row["kept"]) == {g for g in GRANULARITIES if not g.startswith("expert")}
        assert set(row["metrics"]) == set(METRIC_KEYS)
        assert isinstance(row["wall_s"], float) and row["wall_s"] >= 0
        assert isinstance(row["peak_mb"], float) and row["peak_mb"] > 0
        assert 0.0 <= row["fraction_kept"] <= 1.0
    variants = sorted(r["variant"] for r in rows if r["method"] == "attribution")
    assert variants == ["faithfulness-matched", "size-matched"]
    (random_row,) = [r for r in rows if r["method"] == "random"]
    assert set(random_row["spread"]) == set(METRIC_KEYS) - {"n"}
    assert len(random_row["draws"]) == 3
    for name in ("curves.json", "claim.json", "compare.txt"):
        assert (tmp_path / name).is_file()
    assert (tmp_path / "circuits" / "coarse.json").is_file()


def test_every_method_has_the_same_full_and_ablated_reference(result):
    for key in ("logit_diff_full", "logit_diff_ablated", "n"):
        values = {round(float(r["metrics"][key]), 5) for r in result.rows}
        assert len(values) == 1, key


def test_size_matched_attribution_and_random_sizes(result):
    multi = result.circuits["multi-granular"]
    (size,) = [r for r in _rows(result, "attribution") if r["variant"] == "size-matched"]
    # neurons are picked inside the kept heads / blocks, so leaf sizes match exactly;
    # a parent none of whose children was picked is pruned, so parents may be smaller
    for g in ("attention_neuron", "mlp_neuron"):
        assert size["kept"][g] == multi.kept(g)
    for g in ATTRIBUTION_GRANULARITIES:
        assert size["kept"][g] <= multi.kept(g)
    (random_row,) = _rows(result, "random")
    for g in multi.enabled:
        assert random_row["kept"][g] <= multi.kept(g)


def test_faithfulness_matched_attribution_reaches_the_target(result):
    (row,) = [r for r in _rows(result, "attribution") if r["variant"] == "faithfulness-matched"]
    target = result.circuits["multi-granular"].metrics["normalized_faithfulness"]
    assert row["target_normalized_faithfulness"] == pytest.approx(target)
    if row["reached"]:
        assert row["metrics"]["normalized_faithfulness"] >= target
    else:
        assert row["fraction_kept"] == pytest.approx(1.0)


def test_coarse_circuit_only_prunes_heads_and_blocks(result):
    coarse = result.circuits["coarse"]
    assert coarse.enabled == ["mlp_block", "attention_head"]
    eff = effective_masks(coarse.masks)
    heads = eff["attention_head"].unsqueeze(-1).expand_as(eff["attention_neuron"])
    assert torch.equal(eff["attention_neuron"], heads)


def test_claim_numbers_match_the_masks(result):
    m = effective_masks(result.circuits["multi-granular"].masks)
    c = effective_masks(result.circuits["coarse"].masks)
    for g in ("attention_neuron", "mlp_neuron"):
        entry = result.claim["neurons"][g]
        inside = int(c[g].sum())
        dropped = int((c[g] & ~m[g]).sum())
        assert entry["inside_coarse"] == inside
        assert entry["dropped_by_multi"] == dropped
        if inside:
            assert entry["dropped_fraction"] == pytest.approx(dropped / inside)
    total = result.claim["neurons"]["all"]
    assert total["inside_coarse"] == sum(
        int(c[g].sum()) for g in ("attention_neuron", "mlp_neuron")
    )
    assert "Central claim, measured" in result.claim_text()


def test_curves_and_areas(result):
    doc = result.curves_json()
    assert set(doc["methods"]) == set(METHODS)
    assert set(doc["area"]) == set(METHODS)
    # main lam and the one --curve-lams value
    assert sorted(p["lam"] for p in doc["methods"]["multi-granular"]) == [0.5, 0.95]
    for method, points in doc["methods"].items():
        xs = [p["fraction_kept"] for p in points]
        assert xs == sorted(xs) and all(0.0 <= x <= 1.0 for x in xs), method
        area = doc["area"][method]
        assert math.isfinite(area["cpr"]) and area["cmd"] >= 0
    # the attribution and random curves reach the full model
    for method in ("attribution", "random"):
        assert doc["methods"][method][-1]["fraction_kept"] == pytest.approx(1.0)


def test_cli_writes_the_files_and_refuses_to_overwrite(tokenizer, tmp_path, monkeypatch, capsys):
    loaded = tiny_model("gpt2", tokenizer)
    monkeypatch.setattr("nodeprune.models.load_model", lambda *a, **k: loaded)
    args = [
        "compare",
        "--model",
        "tiny",
        "--out",
        str(tmp_path),
        "--quiet",
        "--methods",
        "coarse,random",
        "--random-draws",
        "2",
        "--curve-scales",
        "0.5",
        "--steps",
        "4",
        "--n-train",
        "8",
        "--n-val",
        "0",
        "--n-test",
        "4",
        "--no-filter",
        "--lam-attention-head",
        "2.0",
    ]
    assert main(args) == 0
    rows = json.loads((tmp_path / "compare.json").read_text())
    assert [r["method"] for r in rows] == ["multi-granular", "coarse", "random"]
    saved = json.loads((tmp_path / "circuits" / "multi-granular.json").read_text())
    assert saved["config"]["lam_g"]["attention_head"] == 2.0
    assert "| method |" in capsys.readouterr().out
    assert main(args) == 2  # exists, no --overwrite
    assert main([*args[:-2], "--methods", "bogus"]) == 2


def test_methods_compared_at_one_faithfulness_target(tokenizer):
    loaded = trained_ioi_gpt2(tokenizer)
    cfg = _config(n_val=64, steps=30, target_faithfulness=0.8, target_every=5)
    options = CompareOptions(curve_targets=[0.6], progress=False)
    comparison = Comparison(loaded, cfg, options)
    try:
        result = comparison.run(methods=["multi-granular", "coarse"])
    finally:
        comparison.close()
    for name in ("multi-granular", "coarse"):
        target = result.circuits[name].extra["target"]
        assert target["kind"] == "faithfulness" and target["value"] == 0.8
        assert target["validation"] >= 0.8
        points = result.curves[name]
        assert [p.get("target_faithfulness") for p in points] == [None, 0.6]
    claim = result.claim
    assert isinstance(claim["faithfulness_matched"], bool) and isinstance(claim["shown"], bool)
    gap = abs(claim["normalized_faithfulness"]["multi-granular"]
              - claim["normalized_faithfulness"]["coarse"])  # fmt: skip
    assert claim["faithfulness_matched"] == (gap <= 0.03)
    assert ("SHOWN" in result.claim_text()) == claim["shown"]
