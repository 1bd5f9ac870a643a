"""Checkpoints: a run stopped at any step (crash, SIGKILL, SIGINT, SIGTERM) and resumed
ends with exactly the circuit of an uninterrupted run; damaged checkpoints are refused
with one line; NaNs stop the run and keep the last good checkpoint."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from conftest import tiny_discovery_config
from safetensors.torch import load_file

from nodeprune import Discovery, DiscoveryConfig
from nodeprune.checkpoint import (
    META_FILE,
    TENSORS_FILE,
    TMP_SUFFIX,
    RunInterrupted,
    read_checkpoint,
    read_meta,
    write_checkpoint,
)
from nodeprune.errors import NodepruneError
from nodeprune.health import NumericalError, likely_cause


def _config(**kw) -> DiscoveryConfig:
    base = {"steps": 14, "n_train": 24, "n_test": 12, "lr": 0.1, "lam": 0.5, "seed": 3}
    return tiny_discovery_config(**{**base, **kw})


class Crash(Exception):
    """Stands in for the process dying between two checkpoints."""


def _crash_at(step: int):
    def on_step(d: Discovery) -> None:
        if d.step == step:
            raise Crash

    return on_step


def _same_json(a, b) -> bool:
    return json.dumps(a.comparable_json(), sort_keys=True) == json.dumps(
        b.comparable_json(), sort_keys=True
    )


@pytest.fixture(scope="module")
def reference(tokenizer):
    from conftest import tiny_model

    loaded = tiny_model("llama", tokenizer)
    d = Discovery(loaded, _config())
    return loaded, d, d.run(progress=False)


def test_resume_after_a_crash_equals_an_uninterrupted_run(reference, tmp_path):
    loaded, ref, ref_circuit = reference
    # Dying during step 10 loses nothing (checkpoint at 9); during step 8, steps 7-8.
    for crash, folder in ((10, tmp_path), (8, tmp_path / "b")):
        with pytest.raises(Crash):
            Discovery(loaded, _config()).run(
                progress=False, checkpoint_dir=folder, checkpoint_every=3, on_step=_crash_at(crash)
            )
    for folder, step in ((tmp_path, 9), (tmp_path / "b", 6)):
        resumed = Discovery(loaded, _config())
        resumed.load_checkpoint(folder)
        assert resumed.step == step
        circuit = resumed.run(progress=False, checkpoint_dir=folder, checkpoint_every=3)
        assert torch.equal(resumed.gates.log_alpha, ref.gates.log_alpha)
        assert all(torch.equal(circuit.masks[g], ref_circuit.masks[g]) for g in circuit.masks)
        assert _same_json(circuit, ref_circuit)
        assert len(resumed.history) == len(ref.history)


def test_checkpoint_is_safetensors_plus_json_without_pickles(reference, tmp_path):
    loaded, _, _ = reference
    d = Discovery(loaded, _config(steps=4))
    d.run(progress=False, checkpoint_dir=tmp_path, checkpoint_every=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [META_FILE, TENSORS_FILE]
    tensors = load_file(tmp_path / TENSORS_FILE)
    assert torch.equal(tensors["gates.log_alpha"], d.gates.log_alpha.detach())
    assert {"rng.generator", "rng.torch", "rng.numpy", "data.order"} <= set(tensors)
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["step"] == 4 and meta["config"] == d.config.to_dict()
    assert set(meta["rng"]) == {"python", "numpy"}


def test_rng_states_are_restored(reference, tmp_path):
    import random

    import numpy as np

    loaded, _, _ = reference
    d = Discovery(loaded, _config(steps=2))
    d.run(progress=False, checkpoint_dir=tmp_path)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    Discovery(loaded, _config(steps=2)).load_checkpoint(tmp_path)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_a_write_killed_between_the_renames_is_finished_on_load(tmp_path):
    write_checkpoint(tmp_path, {"x": torch.zeros(3)}, {"format_version": 1, "step": 1})
    # The second write dies after renaming the tensors, before renaming the JSON.
    write_checkpoint(tmp_path / "next", {"x": torch.ones(3)}, {"format_version": 1, "step": 2})
    os.replace(tmp_path / "next" / TENSORS_FILE, tmp_path / TENSORS_FILE)
    os.replace(tmp_path / "next" / META_FILE, tmp_path / (META_FILE + TMP_SUFFIX))
    tensors, meta = read_checkpoint(tmp_path)
    assert meta["step"] == 2 and torch.equal(tensors["x"], torch.ones(3))
    assert not (tmp_path / (META_FILE + TMP_SUFFIX)).exists()


def _damage(kind: str, folder) -> None:
    tensors, meta = folder / TENSORS_FILE, folder / META_FILE
    if kind == "truncated tensors":
        tensors.write_bytes(tensors.read_bytes()[:100])
    elif kind == "tensors from another write":
        write_checkpoint(folder / "other", {"x": torch.ones(1)}, {"format_version": 1})
        os.replace(folder / "other" / TENSORS_FILE, tensors)
    elif kind == "json garbage":
        meta.write_text("{not json")
    elif kind == "json not an object":
        meta.write_text("[1, 2]")
    elif kind == "format version":
        data = json.loads(meta.read_text())
        meta.write_text(json.dumps({**data, "format_version": 7}))
    elif kind == "meta missing":
        meta.unlink()
    elif kind == "step out of range":
        data = json.loads(meta.read_text())
        meta.write_text(json.dumps({**data, "step": 10**6}))
    elif kind == "config not a table":
        data = json.loads(meta.read_text())
        meta.write_text(json.dumps({**data, "config": [1, 2]}))
    elif kind == "history malformed":
        data = json.loads(meta.read_text())
        meta.write_text(json.dumps({**data, "history": [{"nope": 1}]}))


DAMAGE = [
    ("truncated tensors", "damaged"),
    ("tensors from another write", "does not match"),
    ("json garbage", "not readable JSON"),
    ("json not an object", "JSON object"),
    ("format version", "format_version"),
    ("meta missing", "no checkpoint"),
]


@pytest.mark.parametrize("kind, message", DAMAGE)
def test_damaged_checkpoints_are_refused_in_one_line(reference, tmp_path, kind, message):
    loaded, _, _ = reference
    Discovery(loaded, _config(steps=2)).run(progress=False, checkpoint_dir=tmp_path)
    _damage(kind, tmp_path)
    with pytest.raises(NodepruneError, match=message) as info:
        Discovery(loaded, _config(steps=2)).load_checkpoint(tmp_path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["step out of range", "history malformed", "config not a table"])
def test_inconsistent_checkpoint_contents_are_refused(reference, tmp_path, kind):
    loaded, _, _ = reference
    Discovery(loaded, _config(steps=2)).run(progress=False, checkpoint_dir=tmp_path)
    _damage(kind, tmp_path)
    # Rewritten through write_checkpoint so that the checksum matches the new JSON.
    tensors, meta = read_checkpoint_ignoring_checksum(tmp_path)
    write_checkpoint(tmp_path, tensors, meta)
    with pytest.raises(NodepruneError, match="damaged"):
        Discovery(loaded, _config(steps=2)).load_checkpoint(tmp_path)


def read_checkpoint_ignoring_checksum(folder):
    from safetensors.torch import load

    meta = json.loads((folder / META_FILE).read_text())
    meta.pop("tensors_sha256")
    return load((folder / TENSORS_FILE).read_bytes()), meta


def test_resume_with_another_config_or_model_is_refused(reference, tmp_path, tokenizer):
    from conftest import tiny_model

    loaded, _, _ = reference
    Discovery(loaded, _config(steps=2)).run(progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(NodepruneError, match=r"another config: lr 0\.1 \(checkpoint\) vs 0\.2"):
        Discovery(loaded, _config(steps=2, lr=0.2)).load_checkpoint(tmp_path)
    with pytest.raises(NodepruneError, match="was made on model"):
        Discovery(tiny_model("gpt2", tokenizer), _config(steps=2)).load_checkpoint(tmp_path)


def test_from_checkpoint_rebuilds_the_run(reference, tmp_path):
    loaded, ref, _ = reference
    with pytest.raises(Crash):
        Discovery(loaded, _config()).run(
            progress=False, checkpoint_dir=tmp_path, checkpoint_every=4, on_step=_crash_at(5)
        )
    d = Discovery.from_checkpoint(loaded, tmp_path)
    assert d.step == 4 and d.config == ref.config
    d.run(progress=False)
    assert torch.equal(d.gates.log_alpha, ref.gates.log_alpha)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_after_the_step_with_a_checkpoint(reference, tmp_path, signum):
    loaded, ref, _ = reference
    before = signal.getsignal(signum)

    def send(d: Discovery) -> None:
        if d.step == 5:
            os.kill(os.getpid(), signum)

    d = Discovery(loaded, _config())
    with pytest.raises(RunInterrupted, match="after step 5 of 14") as info:
        d.run(progress=False, checkpoint_dir=tmp_path, checkpoint_every=100, on_step=send)
    assert info.value.exit_code == 128 + signum
    assert signal.getsignal(signum) == before  # handlers are put back
    assert read_meta(tmp_path)["step"] == 5
    resumed = Discovery(loaded, _config())
    resumed.load_checkpoint(tmp_path)
    resumed.run(progress=False)
    assert torch.equal(resumed.gates.log_alpha, ref.gates.log_alpha)


def _nan_kl_at(monkeypatch, step: int) -> None:
    import nodeprune.discovery as discovery_module

    real = discovery_module.kl_full_to_circuit
    calls = {"n": 0}

    def kl(full, logits):
        calls["n"] += 1
        out = real(full, logits)
        return out * float("nan") if calls["n"] == step else out

    monkeypatch.setattr(discovery_module, "kl_full_to_circuit", kl)


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    reference, tmp_path, monkeypatch
):
    loaded, _, _ = reference
    _nan_kl_at(monkeypatch, 8)
    d = Discovery(loaded, _config())
    with pytest.raises(NumericalError, match=r"step 8: kl is nan") as info:
        d.run(progress=False, checkpoint_dir=tmp_path, checkpoint_every=3)
    message = str(info.value)
    assert "last good checkpoint (after step 6)" in message and "\n" not in message
    assert info.value.step == 8
    monkeypatch.undo()
    resumed = Discovery(loaded, _config())
    resumed.load_checkpoint(tmp_path)
    assert resumed.step == 6 and torch.isfinite(resumed.gates.log_alpha).all()


def test_nan_gradient_blames_the_learning_rate(reference, monkeypatch):
    loaded, _, _ = reference
    d = Discovery(loaded, _config(steps=3))
    monkeypatch.setattr(
        torch.nn.utils, "clip_grad_norm_", lambda params, clip: torch.tensor(float("inf"))
    )
    before = d.gates.log_alpha.detach().clone()
    with pytest.raises(NumericalError, match=r"step 1: gradient is inf .*lower --lr"):
        d.run(progress=False)
    assert torch.equal(d.gates.log_alpha.detach(), before)  # never applied


def test_likely_causes():
    assert "--dtype float32" in likely_cause("loss", "bfloat16", 0.5)
    assert "lr 5.0" in likely_cause("gates", "float32", 5.0)
    assert "logits" in likely_cause("kl", "float32", 0.1)
