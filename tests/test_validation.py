"""Every bad config or circuit file gives a one-line NodepruneError naming the problem."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from nodeprune.architectures.base import ModelDims
from nodeprune.circuit import Circuit, full_masks
from nodeprune.cli import main
from nodeprune.config import DEFAULT_LAM_G, DiscoveryConfig
from nodeprune.errors import NodepruneError
from nodeprune.granularity import GRANULARITIES

BAD_TOML = [
    ("stpes = 10", "unknown key 'stpes' (did you mean 'steps'?)"),
    ("[lam_g]\nmlp_nueron = 2", "unknown key 'mlp_nueron' in [lam_g] (did you mean 'mlp_neuron'?)"),
    ('steps = "ten"', "steps must be an integer, got 'ten'"),
    ("steps = 2.5", "steps must be an integer"),
    ("steps = 0", "steps must be in [1, "),
    ("lam = 1.5", "lam must be in [0, 1]"),
    ("lr = nan", "lr must be a finite number"),
    ("lr = -0.1", "lr must be > 0"),
    ("grad_clip = inf", "grad_clip must be a finite number"),
    ('lam_g = "big"', "lam_g must be a table"),
    ("[lam_g]\nlayer = -1", "lam_g.layer must be >= 0"),
    ('[lam_g]\nlayer = "x"', "lam_g.layer must be a number"),
    ("granularities = [1, 2]", "granularities must be a list of strings"),
    ('granularities = ["heads"]', "unknown granularity 'heads'"),
    ("filter = 1", "filter must be true or false"),
    ('device = "gpu0"', "device 'gpu0' is not a device name"),
    ('dtype = "fp8"', "dtype must be one of"),
    ('autocast = "bf16"', "autocast must be one of auto, off, bfloat16, float16"),
    ('ablation = "zeros"', "unknown ablation 'zeros' (did you mean 'zero'?)"),
    ("seed = -3", "seed must be in [0, 2**63)"),
    ("n_train = 100000000", "n_train must be in [1, 1000000]"),
    ("init_log_alpha = 40.0", "init_log_alpha must be in [-10.0, 10.0]"),
    ("sparsity_warmup = 2", "sparsity_warmup must be in [0, 1]"),
    ("[model]\nname = 'x'", "model must be a string"),
    ("steps = ", "not valid TOML"),
]


@pytest.mark.parametrize("text, message", BAD_TOML, ids=[t for t, _ in BAD_TOML])
def test_bad_config_files_give_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "run.toml"
    path.write_text(text + "\n")
    # The config is checked before any model is loaded: these return at once.
    assert main(["discover", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("nodeprune: error: ")
    assert message in err


def test_config_file_that_is_not_utf8_or_missing(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_bytes(b"steps = \xff\n")
    assert main(["discover", "--config", str(path)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["discover", "--config", str(tmp_path / "none.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_good_values_are_normalised():
    cfg = DiscoveryConfig.from_dict(
        {"steps": 10.0, "lr": 1, "granularities": "attention_head,mlp_block", "lam_g": {"layer": 2}}
    ).validate()
    assert cfg.steps == 10 and isinstance(cfg.steps, int) and cfg.lr == 1.0
    assert cfg.granularities == ["mlp_block", "attention_head"]
    assert cfg.lam_g["layer"] == 2.0 and cfg.lam_g["mlp_neuron"] == DEFAULT_LAM_G["mlp_neuron"]


def test_direct_construction_is_checked_too():
    with pytest.raises(NodepruneError, match="batch_size must be an integer"):
        DiscoveryConfig(batch_size="8").validate()
    with pytest.raises(NodepruneError, match="lam must be a finite number"):
        DiscoveryConfig(lam=math.nan).validate()


# -- circuit files ---------------------------------------------------------------------
DIMS = ModelDims(n_layers=2, n_heads=2, head_dim=3, d_model=4, d_mlp=5, n_kv_heads=2)


def valid_circuit_json() -> dict:
    masks = full_masks(DIMS)
    masks["attention_head"][1, 1] = False
    c = Circuit("tiny", "ioi", "corrupted", 0, DIMS, masks, list(GRANULARITIES))
    c.metrics = {"kl": 0.1, "n": 4, "normalized_faithfulness": float("nan")}
    c.timings = {"train_seconds": 1.5}
    return c.to_json()


def _set(path: str, value):
    def mutate(data: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value

    return mutate


def _drop(key: str):
    return lambda data: data.pop(key)


BAD_CIRCUITS = [
    (_set("format_version", 2), "format_version 2 is not supported"),
    (_set("format_version", "1"), "format_version '1' is not supported"),
    (_set("format_version", True), "format_version True is not supported"),
    (_drop("model_dims"), "missing 'model_dims'"),
    (_drop("masks"), "missing 'masks'"),
    (_drop("model"), "missing 'model'"),
    (_set("model", 3), "model must be str"),
    (_set("seed", "0"), "seed must be int"),
    (_set("seed", True), "seed must be int"),
    (_set("model_dims", [2, 2]), "model_dims must be dict"),
    (_set("model_dims.n_layers", -2), "model_dims must be > 0"),
    (_set("model_dims.n_layers", 2.0), "model_dims.n_layers must be int"),
    (_set("model_dims.n_layers", 10**9), "implausibly large"),
    (_set("model_dims.extra", 1), "exactly the keys"),
    (_set("masks", []), "masks must be dict"),
    (_set("masks", {}), "has no masks"),
    (_set("masks.heads", [[1]]), "unknown granularity 'heads'"),
    (_set("masks.layer", [1, 2]), "must hold only 0 and 1"),
    (_set("masks.layer", [1.0, 0.0]), "must hold only 0 and 1"),
    (_set("masks.layer", [1, "a"]), "malformed circuit file"),
    (_set("masks.layer", [[1], [1, 1]]), "malformed circuit file"),
    (_set("masks.layer", [1, 1, 1]), "has shape (3,), expected (2,)"),
    (_set("masks.layer", 1), "must be a nested list"),
    (_set("masks.layer", [10**30, 1]), "malformed circuit file"),
    (_set("metrics", [1]), "metrics must be dict"),
    (_set("metrics.kl", "low"), "metrics.kl must be int or float or null"),
    (_set("config", 5), "config must be dict"),
    (_set("timings", {"train_seconds": "x"}), "timings.train_seconds must be int or float"),
    (_set("model_revision", 5), "model_revision must be str or null"),
]


@pytest.mark.parametrize("mutate, message", BAD_CIRCUITS)
def test_bad_circuit_json_gives_one_line(tmp_path, mutate, message):
    data = valid_circuit_json()
    mutate(data)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    with pytest.raises(NodepruneError) as info:
        Circuit.load(path)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\xff\xfe{}", "not a circuit JSON file"),
        (b"[" * 100_000, "not a circuit JSON file"),  # deeper than the parser's recursion
        (b"", "not a circuit JSON file"),
        (b"[1, 2]", "expected a JSON object"),
    ],
)
def test_unreadable_circuit_files(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_bytes(content)
    with pytest.raises(NodepruneError, match=message):
        Circuit.load(path)


def test_missing_circuit_file_or_folder(tmp_path):
    with pytest.raises(NodepruneError, match="does not exist"):
        Circuit.load(tmp_path / "none.json")
    with pytest.raises(NodepruneError, match="does not exist"):
        Circuit.load(tmp_path)


def test_valid_file_round_trips_including_timings(tmp_path):
    data = valid_circuit_json()
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    c = Circuit.load(path)
    assert c.timings == {"train_seconds": 1.5}
    assert not c.masks["attention_head"][1, 1] and c.masks["attention_head"][1, 0]
    again = c.to_json()
    assert again["masks"] == data["masks"] and again["timings"] == data["timings"]


def test_old_files_with_the_timing_in_extra_still_load():
    data = valid_circuit_json()
    data.pop("timings")
    data["extra"] = {"train_seconds": 3.0, "data": {}}
    c = Circuit.from_json(data)
    assert c.timings == {"train_seconds": 3.0} and c.extra == {"data": {}}


def test_model_identity_is_checked(tmp_path):
    c = Circuit.from_json(copy.deepcopy(valid_circuit_json()))
    c.check_matches(DIMS, "tiny")
    with pytest.raises(NodepruneError, match="applied to 'other'.*check_name=False"):
        c.check_matches(DIMS, "other")
    c.check_matches(DIMS, "other", check_name=False)
    other = ModelDims(n_layers=3, n_heads=2, head_dim=3, d_model=4, d_mlp=5, n_kv_heads=2)
    with pytest.raises(NodepruneError, match="load the model the circuit was found on"):
        c.check_matches(other, "tiny", check_name=False)
    # Two spellings of one local folder are the same model.
    folder = tmp_path / "model"
    folder.mkdir()
    c.model = str(folder)
    c.check_matches(DIMS, str(tmp_path / "." / "model"))


def test_discovery_records_the_model_it_ran_on(llama_model):
    from nodeprune import Discovery

    cfg = DiscoveryConfig(
        model="something-else", steps=1, n_train=8, n_val=0, n_test=4, filter=False, batch_size=4
    )
    circuit = Discovery(llama_model, cfg).run(progress=False)
    assert circuit.model == llama_model.name
    circuit.check_matches(llama_model.dims, llama_model.name)
    assert isinstance(circuit.masks["layer"], torch.Tensor)


def test_unknown_task_is_named_before_the_model_loads_or_the_folder_is_wiped(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "circuit.json").write_text("{}")
    missing_model = str(tmp_path / "no-such-model")
    args = ["discover", "--task", "iio", "--model", missing_model, "--out", str(out)]
    assert main([*args, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'iio'" in err and "loading" not in err
    assert (out / "circuit.json").exists()
    assert main(["discover", "--task-file", str(tmp_path / "none.jsonl"), "--model",
                 missing_model, "--out", str(tmp_path / "o2")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "none.jsonl" in err and "loading" not in err
