"""The ablator's recorded train split: the corrupted activations of every train prompt,
kept once, so a training step slices them instead of running a corrupted pass."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_discovery_config

from nodeprune import Discovery
from nodeprune import ablator as ablator_module


def _discovery(model, **kw):
    return Discovery(model, tiny_discovery_config(steps=6, n_train=24, lr=0.3, lam=0.5, **kw))


@pytest.mark.parametrize("family", ["llama", "qwen2_moe"])
def test_recorded_values_are_the_corrupted_pass_at_every_real_token(family, llama_model, tokenizer):
    # qwen2_moe: expert sites hold [B, T, experts, d_expert], padded along T all the same.
    if family == "llama":
        model = llama_model
    else:
        from architectures.tiny_models import ROWS, build

        model = build(next(r for r in ROWS if r.id == family), tokenizer)
    d = _discovery(model, granularities=["all"])
    try:
        assert d.ablator.record(d.data.train, 7)  # batches that do not match the steps'
        idx = torch.tensor([5, 0, 17, 3])
        batch = d.data.train.select(idx)
        recorded = d.ablator.values(batch, idx).values
        fresh = d.ablator.values(batch).values
        assert recorded.keys() == fresh.keys() and recorded
        real = batch.attention_mask.bool()
        for key in fresh:
            assert recorded[key].shape == fresh[key].shape, key
            torch.testing.assert_close(recorded[key][real], fresh[key][real], rtol=1e-5, atol=1e-6)
    finally:
        d.close()


def test_a_run_with_the_recording_learns_what_a_run_without_it_learns(llama_model, monkeypatch):
    with_recording = _discovery(llama_model)
    with_recording.run(progress=False)
    assert with_recording.ablator.recording["values"] is not None
    monkeypatch.setattr(ablator_module, "RECORD_BYTES", 0)  # nothing fits: a pass per step
    without = _discovery(llama_model)
    without.run(progress=False)
    assert without.ablator.recording["values"] is None
    torch.testing.assert_close(
        with_recording.gates.log_alpha, without.gates.log_alpha, rtol=1e-4, atol=1e-5
    )
    for a, b in zip(with_recording.history, without.history, strict=True):
        assert abs(a.kl - b.kl) < 1e-5


def test_a_split_over_the_budget_is_asked_for_once_and_not_kept(llama_model):
    d = _discovery(llama_model)
    try:
        calls = []
        kind_values = d.ablator.kind.values
        d.ablator.kind.values = lambda *a: calls.append(1) or kind_values(*a)  # type: ignore
        try:
            assert not d.ablator.record(d.data.train, 8, budget=1)
            n = len(calls)
            assert not d.ablator.record(d.data.train, 8, budget=1)
            assert len(calls) == n  # refused once, remembered
        finally:
            del d.ablator.kind.values
    finally:
        d.close()


def test_mean_and_zero_ablation_record_nothing(llama_model):
    for kind in ("mean", "zero"):
        d = _discovery(llama_model, ablation=kind)
        try:
            assert not d.ablator.record(d.data.train, 8)
            assert "values" not in d.ablator.recording
        finally:
            d.close()
