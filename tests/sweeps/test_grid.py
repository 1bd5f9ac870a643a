"""Grid expansion: the product of the axes, stable hashes, clear errors."""

from __future__ import annotations

import pytest

from nodeprune.config import DEFAULT_LAM_G
from nodeprune.errors import NodepruneError
from nodeprune.sweeps.grid import SweepSpec, config_hash


def test_product_of_axes_with_lam_g():
    spec = SweepSpec(
        base={"steps": 5},
        axes={"lam": [0.5, 0.9], "seed": [0, 1, 2], "lam_g.mlp_neuron": [1.0, 2.0]},
    )
    trials = spec.trials()
    assert len(trials) == 12
    assert len({t.hash for t in trials}) == 12
    for t in trials:
        assert t.config["steps"] == 5
        assert t.config["lam"] == t.axes["lam"] and t.config["seed"] == t.axes["seed"]
        assert t.config["lam_g"]["mlp_neuron"] == t.axes["lam_g.mlp_neuron"]
        # the default stays
        assert t.config["lam_g"]["attention_head"] == DEFAULT_LAM_G["attention_head"]


def test_hash_is_stable_and_ignores_spelling():
    a = SweepSpec(base={"steps": 5}, axes={"lam": [1]}).trials()[0]
    b = SweepSpec(base={"steps": 5, "lam_g": {}}, axes={"lam": [1.0]}).trials()[0]
    c = SweepSpec(base={"steps": 6}, axes={"lam": [1.0]}).trials()[0]
    assert a.hash == b.hash == config_hash(a.config)
    assert a.hash != c.hash


def test_trials_sharing_a_model_are_adjacent():
    spec = SweepSpec(axes={"model": ["m1", "m2"], "seed": [0, 1], "lam": [0.5, 0.9]})
    models = [t.config["model"] for t in spec.trials()]
    assert models == ["m1"] * 4 + ["m2"] * 4


def test_unknown_axis_or_key_fails_before_running():
    with pytest.raises(NodepruneError, match="axis 'lr'"):
        SweepSpec(axes={"lr": [0.1]})
    with pytest.raises(NodepruneError, match="did you mean"):
        SweepSpec(axes={"lam_g.mlp_nueron": [1.0]})
    with pytest.raises(NodepruneError, match="unknown key 'stepz'"):
        SweepSpec(base={"stepz": 3})
    with pytest.raises(NodepruneError, match="no values"):
        SweepSpec(axes={"seed": []})


def test_bad_values_are_left_to_their_trial():
    # lam 1.5 is invalid, but only that trial fails, at run time.
    trials = SweepSpec(axes={"lam": [0.5, 1.5]}).trials()
    assert [t.config["lam"] for t in trials] == [0.5, 1.5]


def test_a_results_table_of_the_first_format_is_read_in_the_current_names(tmp_path):
    # Format /1 called a row's size fraction_kept, the curves' name for another measure.
    import json

    from nodeprune.sweeps.results import SWEEP_FORMAT, ResultTable

    old = {
        "hash": "abc",
        "status": "finished",
        "fraction_kept": 0.25,
        **{k: {} for k in ("axes", "config", "metrics", "kept", "total", "kept_fraction")},
    }
    (tmp_path / "results.json").write_text(
        json.dumps({"format": "nodeprune-sweep/1", "trials": [old]}), encoding="utf-8"
    )
    table = ResultTable(tmp_path)
    row = table.rows["abc"]
    assert row["mean_kept_fraction"] == 0.25 and "fraction_kept" not in row
    table.record(dict(row), None)
    saved = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert saved["format"] == SWEEP_FORMAT
    assert saved["trials"][0]["mean_kept_fraction"] == 0.25
    assert "fraction_kept" not in saved["trials"][0]
