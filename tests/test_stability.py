"""Stability across runs: keep frequencies and pairwise Jaccard, hand-computed."""

from __future__ import annotations

import json

import pytest

from nodeprune.architectures.base import ModelDims
from nodeprune.circuit import Circuit, full_masks
from nodeprune.cli import main
from nodeprune.errors import NodepruneError
from nodeprune.stability import stability

DIMS = ModelDims(n_layers=2, n_heads=2, head_dim=2, d_model=2, d_mlp=4, n_kv_heads=2)
ENABLED = ["attention_head", "mlp_neuron"]


def _run(seed: int, heads: list[list[int]], neurons: list[list[int]], dims=DIMS) -> Circuit:
    masks = full_masks(dims)
    if dims == DIMS:
        masks["attention_head"] = masks["attention_head"].new_tensor(heads).bool()
        masks["mlp_neuron"] = masks["mlp_neuron"].new_tensor(neurons).bool()
    return Circuit("tiny", "ioi", "corrupted", seed, dims, masks, ENABLED)


RUNS = [
    _run(0, [[1, 1], [0, 0]], [[1, 1, 0, 0], [1, 0, 0, 0]]),
    _run(1, [[1, 0], [0, 1]], [[1, 1, 0, 0], [1, 0, 0, 0]]),
    _run(2, [[1, 1], [0, 1]], [[0, 0, 1, 1], [0, 0, 0, 0]]),
]


def test_keep_frequency_and_jaccard_by_hand():
    out = stability(RUNS)
    heads = out["granularities"]["attention_head"]
    assert heads["keep_frequency"] == [[1.0, 2 / 3], [0.0, 2 / 3]]
    assert heads["kept_per_run"] == [2, 2, 3]
    # run0 {00,01} vs run1 {00,11}: 1/3; run0 vs run2 {00,01,11}: 2/3; run1 vs run2: 2/3.
    assert heads["jaccard_pairs"] == pytest.approx({"0-1": 1 / 3, "0-2": 2 / 3, "1-2": 2 / 3})
    assert heads["jaccard_mean"] == pytest.approx(5 / 9)
    assert heads["jaccard_min"] == pytest.approx(1 / 3)
    # Counts per head: 3, 2, 0, 2 -> kept by 0 runs: 1/4, by 2: 2/4, by 3: 1/4.
    assert heads["kept_by_k_runs"] == [0.25, 0.0, 0.5, 0.25]
    # Sizes 2, 2, 3: pairs allow at most 1, 2/3, 2/3; random sets of 2 and 2 of 4 share
    # 1 head on average (1 / 3), of 2 and 3 share 1.5 (1.5 / 3.5).
    assert heads["jaccard_size_ceiling"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert heads["jaccard_chance"] == pytest.approx((1 / 3 + 2 * 1.5 / 3.5) / 3)
    neurons = out["granularities"]["mlp_neuron"]
    # run0 == run1 (3 neurons); run2 shares none of them.
    assert neurons["jaccard_pairs"] == pytest.approx({"0-1": 1.0, "0-2": 0.0, "1-2": 0.0})
    # Per layer: layer 0 counts (2, 2, 1, 1) -> mean 1.5 of 3 runs; layer 1 (2, 0, 0, 0).
    assert neurons["keep_frequency_per_layer"] == pytest.approx([0.5, 1 / 6])
    assert set(out["granularities"]) == set(ENABLED)  # only what every run gated


def test_runs_must_share_a_model():
    other = ModelDims(n_layers=3, n_heads=2, head_dim=2, d_model=2, d_mlp=4, n_kv_heads=2)
    with pytest.raises(NodepruneError, match="different models"):
        stability([RUNS[0], _run(1, [], [], dims=other)])
    with pytest.raises(NodepruneError, match="at least two"):
        stability(RUNS[:1])


def test_cli_prints_and_saves(tmp_path, capsys):
    folders = []
    for c in RUNS:
        folders.append(str(tmp_path / f"s{c.seed}"))
        c.save(tmp_path / f"s{c.seed}" / "circuit.json")
    out = tmp_path / "stability.json"
    assert main(["stability", *folders, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "attention_head" in printed and "0.556" in printed
    assert json.loads(out.read_text())["n_runs"] == 3


def test_faithfulness_spread_and_goals_are_shown():
    runs = [_run(c.seed, c.masks["attention_head"].int().tolist(),
                 c.masks["mlp_neuron"].int().tolist()) for c in RUNS]  # fmt: skip
    for c, f in zip(runs, (0.80, 0.84, 0.82), strict=True):
        c.metrics = {"normalized_faithfulness": f}
    out = stability(runs)
    assert out["faithfulness"]["mean"] == pytest.approx(0.82)
    assert out["faithfulness"]["sd"] == pytest.approx(0.02)
    goals = out["goals"]
    assert goals["faithfulness_sd"]["met"] is True
    assert goals["attention_head_jaccard"]["value"] == pytest.approx(5 / 9)
    assert goals["attention_head_jaccard"]["met"] is False
    from nodeprune.stability import stability_table

    text = stability_table(out)
    assert "sd 0.020" in text and "attention_head_jaccard 0.556 (>= 0.7: NOT met)" in text
