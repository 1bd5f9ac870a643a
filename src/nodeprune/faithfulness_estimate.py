"""Normalized faithfulness with its bootstrap interval, from per-prompt metrics: the
estimator every circuit's figure comes from (evaluation.py sums the metrics)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def normalized_faithfulness(ld_circuit: float, ld_full: float, ld_ablated: float) -> float:
    """(LD_circuit - LD_ablated) / (LD_full - LD_ablated); nan when full == ablated."""
    denom = ld_full - ld_ablated
    if abs(denom) < 1e-12:
        return float("nan")
    return (ld_circuit - ld_ablated) / denom


#: Bootstrap resamples of the test prompts behind the faithfulness interval.
BOOTSTRAP_DRAWS = 2000
#: The normalized faithfulness is a ratio; it means something only when its denominator
#: (full minus fully-ablated metric) is reliably away from zero. It counts as undefined
#: when more than this share of the bootstrap resamples give a denominator of the other
#: sign (or zero): then the ratio's resamples spread over both infinities, and a point
#: estimate of 23.6 can sit outside its own interval [-5.2, 6.9] (seen on a random model).
MAX_DENOMINATOR_FLIPS = 0.005


@dataclass(frozen=True)
class FaithfulnessEstimate:
    """Normalized faithfulness with its percentile-bootstrap interval, from one
    estimator (the ratio of the mean metrics), or undefined with the reason."""

    value: float
    low: float
    high: float
    defined: bool
    denominator: float

    def metrics(self) -> dict[str, float]:
        return {
            "normalized_faithfulness": self.value,
            "normalized_faithfulness_low": self.low,
            "normalized_faithfulness_high": self.high,
            "faithfulness_defined": float(self.defined),
        }


def estimate_faithfulness(
    ld: Tensor, ld_full: Tensor, ld_ablated: Tensor, level: float = 0.95, seed: int = 0
) -> FaithfulnessEstimate:
    """The normalized faithfulness of per-prompt metrics, its interval and whether it
    is defined at all.

    The estimate on a few dozen prompts moves by several hundredths between prompt
    sets (README, Calibration), so every figure comes with this interval. The point
    estimate is the statistic the bootstrap resamples (ratio of means). The resampling
    uses its own seeded generator: the same prompts give the same interval.
    """
    nan = float("nan")
    means = torch.stack([ld, ld_full, ld_ablated]).double().mean(-1)
    denom = float(means[1] - means[2])
    if ld.numel() == 0 or abs(denom) < 1e-12:
        return FaithfulnessEstimate(nan, nan, nan, False, denom)
    value = float(means[0] - means[2]) / denom
    n = ld.numel()
    if n < 2:
        return FaithfulnessEstimate(value, nan, nan, True, denom)
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (BOOTSTRAP_DRAWS, n), generator=generator)
    values = torch.stack([ld, ld_full, ld_ablated]).double()[:, idx].mean(-1)
    denoms = values[1] - values[2]
    flips = float(((denoms * denom) <= 1e-24).double().mean())
    if flips > MAX_DENOMINATOR_FLIPS:
        return FaithfulnessEstimate(nan, nan, nan, False, denom)
    faith = (values[0] - values[2]) / denoms
    tail = (1.0 - level) / 2
    q = torch.tensor([tail, 1.0 - tail], dtype=faith.dtype)
    low, high = (float(x) for x in torch.quantile(faith, q))
    return FaithfulnessEstimate(value, low, high, True, denom)


def faithfulness_interval(
    ld: Tensor, ld_full: Tensor, ld_ablated: Tensor, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """The interval of :func:`estimate_faithfulness` alone (nan when undefined)."""
    estimate = estimate_faithfulness(ld, ld_full, ld_ablated, level, seed)
    return estimate.low, estimate.high
