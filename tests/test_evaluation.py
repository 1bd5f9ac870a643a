"""The bootstrap interval that comes with every normalized faithfulness."""

from __future__ import annotations

import math

import torch

from nodeprune.faithfulness_estimate import (
    estimate_faithfulness,
    faithfulness_interval,
    normalized_faithfulness,
)
from nodeprune.summary import metrics_table


def _prompts(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    full = 4.0 + torch.randn(n, generator=g)
    ablated = 0.5 * torch.randn(n, generator=g)
    circuit = 0.8 * full + 0.2 * ablated + 0.7 * torch.randn(n, generator=g)
    return circuit, full, ablated


def test_interval_holds_the_estimate_and_narrows_with_more_prompts():
    widths = []
    for n in (32, 512):
        ld, full, abl = _prompts(n)
        point = normalized_faithfulness(float(ld.mean()), float(full.mean()), float(abl.mean()))
        low, high = faithfulness_interval(ld, full, abl)
        assert low < point < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # ~1/sqrt(n): 4x fewer would be 1/4 the width


def test_interval_is_reproducible_and_exact_for_identical_prompts():
    ld, full, abl = _prompts(40)
    assert faithfulness_interval(ld, full, abl) == faithfulness_interval(ld, full, abl)
    same = torch.full((20,), 3.0), torch.full((20,), 4.0), torch.full((20,), 1.0)
    low, high = faithfulness_interval(*same)
    assert math.isclose(low, 2 / 3) and math.isclose(high, 2 / 3)


def test_interval_is_nan_when_it_cannot_be_estimated():
    one = torch.ones(1), torch.ones(1) * 2, torch.zeros(1)
    assert all(math.isnan(v) for v in faithfulness_interval(*one))
    flat = torch.ones(10), torch.zeros(10), torch.zeros(10)  # full == ablated everywhere
    assert all(math.isnan(v) for v in faithfulness_interval(*flat))


def test_point_estimate_lies_in_its_interval_whenever_defined():
    # Many prompt sets with small effects: whenever the estimate is defined, the
    # interval comes from the same estimator and holds it.
    for seed in range(40):
        g = torch.Generator().manual_seed(seed)
        full = 0.3 + torch.randn(48, generator=g)
        abl = torch.randn(48, generator=g)
        ld = 0.5 * full + torch.randn(48, generator=g)
        est = estimate_faithfulness(ld, full, abl)
        if est.defined:
            assert est.low <= est.value <= est.high
        else:
            assert all(math.isnan(v) for v in (est.value, est.low, est.high))


def test_near_zero_denominator_is_flagged_not_printed():
    # Full and ablated metric differ by noise only (a random model): the ratio can
    # be anything, so it is undefined rather than a large number.
    g = torch.Generator().manual_seed(3)
    full, abl = torch.randn(64, generator=g), torch.randn(64, generator=g)
    ld = torch.randn(64, generator=g) + 2.0
    est = estimate_faithfulness(ld, full, abl)
    assert not est.defined and math.isnan(est.value)
    assert abs(est.denominator) > 0  # a number exists, it just means nothing
    text = metrics_table({**est.metrics(), "n": 64})
    assert "undefined" in text and "nan" not in text.lower()


def test_clear_effect_is_defined():
    ld, full, abl = _prompts(64)
    est = estimate_faithfulness(ld, full, abl)
    assert est.defined and est.low < est.value < est.high
    assert "undefined" not in metrics_table(est.metrics())
