"""Target modes: ask for a faithfulness, a KL or a size, get the smallest circuit that meets it.

A target turns discovery into a constrained problem, *minimise the circuit's size subject
to faithfulness >= F* (or KL <= K, or units kept <= S). Two parts solve it:

* **During training**, a controller owns the weight of the sparsity term. Its log is a
  dual variable updated by ascent on the constraint's slack, measured on the binarised
  circuit: every ``check_every`` steps the circuit at the current gates is scored on the
  validation prompts, and the sparsity weight grows (more pruning) while the circuit
  is more faithful than asked and shrinks while it is less. This is the Lagrangian of
  constrained L0 pruning with the multiplier on the sparsity side (so the faithfulness
  term keeps its scale), updated multiplicatively because the useful range spans
  orders of magnitude.
* **At the end**, the binarisation threshold on log-alpha (0 by default: gate > 0.5)
  is moved to the largest value whose circuit still meets the target on the
  validation prompts (bisection; nodes join and leave in log-alpha order), so the
  circuit lands on the target instead of wherever training stopped.

The full model has normalized faithfulness 1 and KL 0 by definition, so a faithfulness
target above 1 or a KL target below 0 can never be met and is refused up front; any
target in range is met on the validation prompts (at worst by the full model). The
test prompts then say how well that holds on held-out data, with its interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .curves import fraction_kept
from .errors import NodepruneError
from .evaluation import SplitReference
from .target_spec import Target, target_from_config

if TYPE_CHECKING:
    from .workbench import Workbench

__all__ = ["Target", "target_from_config"]

#: Least number of validation prompts a faithfulness or KL target is measured on.
MIN_VALIDATION = 8


#: The threshold search stops once the gates moved are known to within 1/RESOLUTION of
#: the gates it could move (one gate when fewer than that): on SmolLM2, 25,000 kept gates
#: are trimmed to within about 200 (0.4% of the MLP neurons); each further halving is a
#: pass over the validation prompts (about 12 s of the demo) for a difference smaller
#: than the seed-to-seed spread of circuit sizes.
RESOLUTION = 128

#: The weight rises at this fraction of ``target_rate`` and falls at the whole of it.
RISE_FRACTION = 0.25


class SparsityController:
    """The sparsity weight as a dual variable: ``exp(log_weight)``, moved by ascent on the
    slack to the target's training aim (clipped to [-1, 1], so one measurement moves it by
    at most ``rate``).

    Asymmetric on purpose: pruning cannot be undone (a closed hard-concrete gate samples
    0 and gets no gradient), while a circuit left too large is trimmed by the final
    selection. Measured on SmolLM2 IOI (target 0.85, granular Adam), a symmetric
    controller raised the weight 6.7x in 50 steps while the circuit was still above
    its target, and the pruning it set off ran on to validation faithfulness 0.09 at
    step 70, from which lowering the weight to 0.07 brought it back only to 0.27. So
    the weight rises at RISE_FRACTION of the rate it falls, towards an aim a little
    inside the target (Target.training_aim)."""

    def __init__(self, target: Target, rate: float, every: int, log_weight: float = 0.0) -> None:
        self.target = target
        self.aim = target.training_aim()
        self.rate = rate
        self.every = every
        self.log_weight = log_weight
        self.last_measured = float("nan")

    @property
    def weight(self) -> float:
        return math.exp(self.log_weight)

    def update(self, measured: float) -> None:
        self.last_measured = measured
        slack = max(-1.0, min(1.0, self.aim.slack(measured)))
        step = self.rate * slack * (RISE_FRACTION if slack > 0 else 1.0)
        # Bounded so that a long run far from its target cannot overflow the weight.
        self.log_weight = max(-20.0, min(20.0, self.log_weight + step))

    def measures_after(self, step: int, steps: int) -> bool:
        """Whether the controller measures after ``step``: every ``every`` steps from the
        first, not at the last step (the final selection measures then).

        The sparsity warm-up is included on purpose: Adam moves a gate that only the
        sparsity term pushes at about the learning rate whatever that term's weight, so the
        warm-up's ramp does not slow the first pruning. Measured on SmolLM2 IOI (target
        0.85), two of five seeds had pruned to validation faithfulness 0.58 by step 50,
        where a controller that waited for the end of the warm-up first looked, and closed
        gates get no gradient to come back."""
        return step > 0 and step % self.every == 0 and step != steps

    def after_step(self, step: int, steps: int, measure: Callable[[], float]) -> float | None:
        """One rule for the node loop and the edge loop: at a measurement step, measure
        the binarised circuit (``measure()``) and move the weight; the measurement, or None."""
        if not self.measures_after(step, steps):
            return None
        measured = measure()
        self.update(measured)
        return measured

    def replayed(self, history: list) -> SparsityController:
        """A fresh controller (same target, rate and period) after the measurements in a
        loop's ``history`` (its logs' ``validation``): its state is a function of them,
        so a resumed run gets it back bit for bit."""
        controller = SparsityController(self.target, self.rate, self.every)
        for log in history:
            if log.validation is not None:
                controller.update(log.validation)
        return controller


def validation_reference(bench: Workbench, granularities: list[str]) -> SplitReference:
    """The workbench's kept reference of the validation prompts, computed now: the
    threshold search measures a target on it, and the controller on its first prompts
    (:meth:`SplitReference.first_prompts`). The full and fully ablated outputs and the
    ablated values are recorded once, so each score is one gated pass per batch."""
    data = bench.data.validation
    n = 0 if data is None else len(data)
    if n < MIN_VALIDATION:
        raise NodepruneError(
            f"a faithfulness or KL target is measured on the validation prompts, but only "
            f"{n} are left (need {MIN_VALIDATION}); raise --n-val"
        )
    return bench.reference("validation", granularities).prepare()


def measure(target: Target, masks: dict[str, Tensor], probe: SplitReference | None) -> float:
    """The target's quantity for a binary circuit (size needs no prompts)."""
    if target.kind == "size":
        return fraction_kept(masks)  # the curves' x-axis: attention + MLP neurons
    assert probe is not None
    return probe.score(masks)[target.kind]


class GateRanking:
    """Every gate of a run in one order, least open first: by log-alpha, ties broken by
    ``tiebreak`` (larger: kept longer), then by position. A circuit is a cut of it: the
    ``dropped`` gates at the bottom are closed, the rest open, so circuits along the
    ranking are nested and one more dropped gate is one gate fewer.

    The tie-break matters because training clamps log-alpha to +-10 (hard_concrete.py):
    a search on the value of a threshold (keep log-alpha > t) can only drop a whole tie
    at once. (It was suspected of holding SmolLM2 IOI's coarse circuit at 229 of 270
    heads; only 5 heads were at +10 there, and the validation prompts' luck was the
    cause: config.py, n_val.)
    """

    def __init__(self, log_alphas: dict[str, Tensor], tiebreak: dict[str, Tensor] | None = None):
        self.shapes = {g: la.shape for g, la in log_alphas.items()}
        self.values = torch.cat([la.detach().flatten().float().cpu() for la in log_alphas.values()])
        n = len(self.values)
        order = torch.arange(n)
        if tiebreak is not None:
            second = torch.cat([tiebreak[g].detach().flatten().float().cpu() for g in log_alphas])
            order = torch.sort(second, stable=True).indices
        order = order[torch.sort(self.values[order], stable=True).indices]
        self.order = order
        self.rank = torch.empty(n, dtype=torch.long)
        self.rank[order] = torch.arange(n)
        #: The learned circuit (log-alpha > 0) is the cut at this many dropped gates.
        self.learned_dropped = int((self.values <= 0.0).sum())

    def __len__(self) -> int:
        return len(self.values)

    def has_ties(self) -> bool:
        return int(torch.unique(self.values).numel()) < len(self.values)

    def kept(self, dropped: int) -> dict[str, Tensor]:
        """Each granularity's gates (bool, its own shape) that stay open at the cut."""
        keep = self.rank >= dropped
        out, start = {}, 0
        for g, shape in self.shapes.items():
            size = math.prod(shape)
            out[g] = keep[start : start + size].reshape(shape)
            start += size
        return out

    def threshold(self, dropped: int) -> float:
        """The log-alpha of the last gate dropped (below every gate when none is)."""
        if dropped <= 0:
            return float(self.values.min()) - 1.0
        return float(self.values[self.order[dropped - 1]])


@dataclass
class Selection:
    """The cut of the gate ranking chosen for a target, and what it gave on validation."""

    dropped: int
    threshold: float
    measured: float
    evaluations: int
    #: The open gates at the cut, per granularity (before hierarchical consistency).
    kept: dict[str, Tensor]
    tie_break: str

    def to_json(self) -> dict[str, float | int | str]:
        return {
            "threshold": self.threshold,
            "gates_dropped": self.dropped,
            "tie_break": self.tie_break,
            "validation": self.measured,
            "evaluations": self.evaluations,
        }


def select_threshold(
    target: Target,
    log_alphas: dict[str, Tensor],
    binarise: Callable[[dict[str, Tensor]], dict[str, Tensor]],
    probe: SplitReference | None,
    iterations: int = 12,
    measure_with: Callable[[Target, dict[str, Tensor], object], float] | None = None,
    tiebreak: Callable[[], dict[str, Tensor]] | None = None,
    early_after: int | None = None,
) -> Selection:
    """The cut of the gates' ranking (:class:`GateRanking`) for ``target``.

    ``binarise(kept)`` gives the consistent binary masks of the open gates ``kept``.
    ``tiebreak()`` gives the ranking's second key, asked for only when log-alphas tie
    (the validation prompts' :meth:`SplitReference.pruning_harm` for a node run).
    For size: the largest circuit within the size, by bisection on the cut.
    For faithfulness and KL, starting from the learned circuit (log-alpha > 0): if it
    meets the target, it is trimmed, its least open gates first; if not, the gates the
    training closed least firmly come back first, until it does. The number of gates
    moved is searched exponentially from a few (n/512), then by bisection to within
    n/RESOLUTION, so the answer stays next to what training learned: a bisection on
    the threshold's value instead jumps to its middle (log-alphas spread over
    [-10, 10]), which refilled 96% of SmolLM2's MLP neurons to gain 0.01 of faithfulness.

    ``measure_with(target, masks, probe)`` replaces :func:`measure` (the edge phase
    measures edge circuits, whose size is a fraction of edges). ``early_after``: a
    faithfulness target's circuits are read from this many prompts on only until their
    side of the target is clear (:meth:`SplitReference.decided_faithfulness`); the
    chosen circuit's reported measurement is always over every prompt.
    """
    measure_fn = measure if measure_with is None else measure_with
    ranking = GateRanking(log_alphas)
    tie_break = "position"
    if tiebreak is not None and ranking.has_ties():
        ranking = GateRanking(log_alphas, tiebreak())
        tie_break = "pruning_harm"
    n_all = len(ranking)
    evaluations = 0
    sequential = (
        early_after is not None
        and target.kind == "faithfulness"
        and measure_with is None
        and isinstance(probe, SplitReference)
    )
    read_all: dict[int, bool] = {}

    def at(dropped: int, every_prompt: bool = False) -> float:
        nonlocal evaluations
        evaluations += 1
        masks = binarise(ranking.kept(dropped))
        if sequential and not every_prompt:
            assert isinstance(probe, SplitReference) and early_after is not None
            value, read_all[dropped] = probe.decided_faithfulness(masks, target.value, early_after)
            return value
        read_all[dropped] = True
        return measure_fn(target, masks, probe)

    def chosen(dropped: int, value: float) -> Selection:
        if not read_all.get(dropped, True):
            value = at(dropped, every_prompt=True)
        kept = ranking.kept(dropped)
        return Selection(dropped, ranking.threshold(dropped), value, evaluations, kept, tie_break)

    if target.kind == "size":
        # Counting units needs no prompts: bisect to one gate (good meets the size).
        full_value = at(0)
        if target.met(full_value):
            return chosen(0, full_value)
        good, bad = n_all, 0
        good_value = at(good)
        while good - bad > 1:
            mid = (good + bad) // 2
            value = at(mid)
            if target.met(value):
                good, good_value = mid, value
            else:
                bad = mid
        return chosen(good, good_value)

    learned = ranking.learned_dropped
    start = at(learned)
    trimming = target.met(start)
    if trimming:
        n = n_all - learned

        def cut(k: int) -> int:  # the k least open gates dropped
            return learned + k
    else:
        n = learned

        def cut(k: int) -> int:  # the k least firmly closed gates back
            return learned - k

        full = at(0)
        if not target.met(full):
            raise NodepruneError(
                f"the target ({target.describe()}) is not met even by the full model on "
                f"the validation prompts (measured {full:.4g}); ask for less"
            )
    # meets[k] is known for k_good; k_bad is the nearest k known not to meet it.
    if trimming:
        k_good, good_value, k_bad = 0, start, None
    else:
        k_good, good_value, k_bad = n, full, 0
    k = max(1, math.ceil(n / 512))
    while k < n or (trimming and k == n):
        value = at(cut(k))
        if target.met(value) == trimming:  # still meets (trimming) / still misses (adding)
            if trimming:
                k_good, good_value = k, value
            else:
                k_bad = k
            if k == n:
                break
            k = min(n, 2 * k)
            continue
        if trimming:
            k_bad = k
        else:
            k_good, good_value = k, value
        break
    if k_bad is None:  # trimmed to nothing and it still meets the target
        return chosen(cut(k_good), good_value)
    resolution = max(1, n // RESOLUTION)
    for _ in range(iterations):
        if abs(k_good - k_bad) <= resolution:
            break
        mid = (k_good + k_bad) // 2
        value = at(cut(mid))
        if target.met(value):
            k_good, good_value = mid, value
        else:
            k_bad = mid
    return chosen(cut(k_good), good_value)
