"""The bootstrap interval that comes with every normalized faithfulness."""

from __future__ import annotations

import math

import torch

from nodeprune.evaluation import faithfulness_interval, normalized_faithfulness


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
