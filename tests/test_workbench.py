"""The Workbench, the set-up of a run: built once, shared, and it takes its hooks off the
model when closed or when its set-up fails; discover() neither ignores a misspelt
setting nor changes the caller's config."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_discovery_config

import nodeprune.splits as splits
from nodeprune import Discovery, DiscoveryConfig, discover
from nodeprune.compare import CompareOptions, Comparison
from nodeprune.errors import NodepruneError
from nodeprune.large_models import GATED_ATTR
from nodeprune.workbench import Workbench


def hooks(loaded) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in loaded.model.modules())


def _keep_none(monkeypatch):
    monkeypatch.setattr(
        splits,
        "keep_correct",
        lambda gated, task, batch, size: (batch.select(torch.arange(0)), torch.zeros(0, 1)),
    )


def test_a_workbench_takes_its_hooks_off_when_closed(llama_model):
    before = hooks(llama_model)
    with Workbench.for_config(llama_model, tiny_discovery_config()) as bench:
        assert hooks(llama_model) > before
        assert getattr(llama_model.model, GATED_ATTR) is bench.gated
        logprobs = bench.train_logprobs
        assert bench.train_logprobs is logprobs  # computed once
        assert logprobs.shape[0] == len(bench.data.train)
    assert hooks(llama_model) == before
    assert not hasattr(llama_model.model, GATED_ATTR)
    bench.close()  # again: nothing


def test_a_failed_set_up_leaves_no_hooks(llama_model, monkeypatch):
    before = hooks(llama_model)
    _keep_none(monkeypatch)
    cfg = tiny_discovery_config(filter=True)
    with pytest.raises(NodepruneError, match="answers none"):
        Workbench.for_config(llama_model, cfg)
    with pytest.raises(NodepruneError, match="answers none"):
        Discovery(llama_model, cfg)
    with pytest.raises(NodepruneError, match="answers none"):
        Comparison(llama_model, cfg, CompareOptions(progress=False))
    assert hooks(llama_model) == before


def test_runs_share_one_workbench(llama_model):
    cfg = tiny_discovery_config(steps=2)
    with Workbench.for_config(llama_model, cfg) as bench:
        hooked = hooks(llama_model)
        coarse = DiscoveryConfig(**{**cfg.to_dict(), "granularities": ["attention_head"]})
        first, second = Discovery(bench, cfg), Discovery(bench, coarse)
        assert hooks(llama_model) == hooked  # no second set of hooks
        assert first.data is second.data is bench.data
        assert first.ablator.means is bench.ablator.means  # fitted once
        assert set(second.ablator.sites) <= set(first.ablator.sites)
        first.run(progress=False)
        second.close()  # a shared workbench is its owner's to close
        assert hooks(llama_model) == hooked
        with pytest.raises(NodepruneError, match="ablation"):
            Discovery(bench, DiscoveryConfig(**{**cfg.to_dict(), "ablation": "zero"}))


def test_a_comparison_hangs_one_set_of_hooks(llama_model, monkeypatch):
    before = hooks(llama_model)
    seen = []
    real = Discovery.train_step

    def counting(self):
        seen.append(hooks(llama_model))
        return real(self)

    monkeypatch.setattr(Discovery, "train_step", counting)
    options = CompareOptions(random_draws=1, curve_scales=[], search_steps=0, progress=False)
    with Comparison(llama_model, tiny_discovery_config(steps=2), options) as comparison:
        hooked = hooks(llama_model)
        comparison.run(["multi-granular", "coarse"])
    assert seen and set(seen) == {hooked}
    assert hooks(llama_model) == before


def test_discover_refuses_a_misspelt_setting_and_keeps_the_callers_config(llama_model):
    cfg = tiny_discovery_config(steps=2)
    with pytest.raises(NodepruneError, match=r"unknown key 'lamm' \(did you mean 'lam'\?\)"):
        discover(llama_model, cfg, lamm=0.5)
    before = hooks(llama_model)
    circuit = discover(llama_model, cfg, progress=False, steps=1, lam=0.5)
    assert circuit.config["steps"] == 1 and circuit.config["lam"] == 0.5
    assert cfg.steps == 2 and cfg.lam == tiny_discovery_config().lam
    assert hooks(llama_model) == before  # discover() takes its hooks off again


def _random_masks(bench, generator):
    from nodeprune.circuit import full_masks, make_consistent

    masks = full_masks(bench.dims)
    for g in bench.gated.granularities:
        masks[g] = torch.rand(masks[g].shape, generator=generator) > 0.4
    return make_consistent(masks, bench.gated.granularities)


@pytest.mark.parametrize("ablation", ["corrupted", "mean", "zero"])
def test_a_kept_split_reference_scores_circuits_as_a_fresh_evaluation_does(
    llama_model, ablation, monkeypatch
):
    from nodeprune.evaluation import evaluate_gates

    cfg = tiny_discovery_config(ablation=ablation, n_test=24, eval_batch_size=8)
    with Workbench.for_config(llama_model, cfg) as bench:
        enabled = list(bench.gated.granularities)
        reference = bench.reference("test", enabled)
        assert bench.reference("test", list(reversed(enabled))) is reference  # one per pair
        generator = torch.Generator().manual_seed(0)
        for _ in range(3):
            masks = _random_masks(bench, generator)
            gates = {g: masks[g].float() for g in enabled}
            fresh = evaluate_gates(
                bench.gated, bench.ablator, bench.task, bench.data.test, gates, 8
            )
            kept = reference.evaluate(gates)
            assert kept.keys() == fresh.keys()
            for key in fresh:
                assert kept[key] == pytest.approx(fresh[key], rel=1e-5, abs=1e-6, nan_ok=True), key
        # Once kept, a circuit costs one gated pass per batch: no full or corrupted pass.
        calls = {"plain": 0, "gated": 0}
        plain, gated = bench.gated.plain_logits, bench.gated.gated_logits

        def count(name, fn):
            def wrapper(*args, **kwargs):
                calls[name] += 1
                return fn(*args, **kwargs)

            return wrapper

        monkeypatch.setattr(bench.gated, "plain_logits", count("plain", plain))
        monkeypatch.setattr(bench.gated, "gated_logits", count("gated", gated))
        reference.evaluate(gates)
        assert calls == {"plain": 0, "gated": len(reference.parts)}
        assert reference.batches_with_ablated == len(reference.parts)
    with pytest.raises(ValueError, match="gates of"):
        reference.evaluate({enabled[0]: gates[enabled[0]]})


def test_the_filters_full_model_logits_are_the_references_and_no_pass_repeats_them(
    llama_model, monkeypatch
):
    from nodeprune.evaluation import evaluate_gates
    from nodeprune.tasks import resolve_task

    task = resolve_task("ioi")
    # The random tiny model gets IOI wrong; keep every prompt so the filter runs on all.
    monkeypatch.setattr(task, "correct", lambda logits, batch: torch.ones(len(batch)).bool())
    cfg = tiny_discovery_config(filter=True, n_val=16, eval_batch_size=8)
    with Workbench.for_config(llama_model, cfg, task) as bench:
        assert set(bench.data.full_logits) == {"train", "validation", "test"}
        enabled = list(bench.gated.granularities)
        masks = _random_masks(bench, torch.Generator().manual_seed(1))
        gates = {g: masks[g].float() for g in enabled}
        fresh = evaluate_gates(bench.gated, bench.ablator, bench.task, bench.data.test, gates, 8)
        fresh_train = torch.cat(
            [
                torch.log_softmax(
                    bench.gated.plain_logits(p.clean_ids, p.attention_mask, p.answer_pos), -1
                )
                for p in bench.data.train.batches(8)
            ]
        )
        plain = bench.gated.plain_logits
        calls = []
        monkeypatch.setattr(
            bench.gated, "plain_logits", lambda *a, **k: calls.append(1) or plain(*a, **k)
        )
        kept = bench.reference("test", enabled).evaluate(gates)
        assert torch.allclose(bench.train_logprobs, fresh_train, atol=1e-5)
        assert calls == []  # neither the test reference nor the train log-probs ran the model
        for key in fresh:
            assert kept[key] == pytest.approx(fresh[key], rel=1e-5, abs=1e-6, nan_ok=True), key
