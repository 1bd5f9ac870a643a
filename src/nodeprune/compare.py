"""``nodeprune compare``: the method next to its alternatives, on the same prompts.

Methods (:data:`METHODS`: the two discoveries, then every baseline of the registry
:data:`nodeprune.baselines.BASELINES`), all run on one Workbench (one task split, seed,
set of hooks and fitted ablation), and all evaluated by
:func:`nodeprune.evaluation.evaluate_gates` on the same test prompts with the gates of
the same granularities (those of the multi-granular run), so that the fully ablated
reference of normalized faithfulness is the same model for every method. A baseline
only scores nodes; its scores become circuits through one path
(:mod:`nodeprune.baselines.circuits`):

* ``multi-granular``: Discovery with every configured granularity (the method);
* ``coarse``: Discovery with attention-head and MLP-block gates only;
* ``attribution``: attribution-patching scores at head, MLP-block and neuron granularity,
  top-k per granularity, once with k equal to the multi-granular circuit's sizes
  (``size-matched``) and once with the smallest sizes, along one knob from empty through
  those sizes to full (:func:`nodeprune.baselines.selection.scaled_counts`), that reach its
  normalized faithfulness (``faithfulness-matched``, bisection over the knob);
* ``random``: uniformly random circuits of the multi-granular circuit's sizes, over
  several draws (mean and standard deviation).

Curves: multi-granular and coarse get one point per ``--curve-lams`` value (a sequential
loop of Discovery runs with every other flag unchanged) plus the main run; attribution and
random get theirs by moving along that knob (``--curve-scales``, in [0, 2]).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .baselines import BASELINES, Baseline, ScoreRequest
from .baselines.circuits import ScaledCircuits
from .baselines.cost import Cost, measure
from .baselines.report import central_claim, claim_text, compare_table, write_outputs
from .baselines.search import smallest_scale_reaching
from .baselines.selection import FULL_SCALE, scale_grid
from .circuit import Circuit
from .closing import ClosedOnExit
from .compare_reuse import REUSED_KEY, SavedDiscoveries, saved_cost
from .config import DiscoveryConfig, config_with
from .curves import curve_point, curves_document, mean_point
from .discovery import Discovery
from .errors import NodepruneError
from .granularity import GRANULARITIES, granularities_for_model, where
from .methods import DEFAULT_CURVE_SCALES, METHODS
from .models import LoadedModel
from .run_files import CLAIM_FILE, COMPARE_FILE, CURVES_FILE
from .tasks import Task
from .workbench import Workbench

#: The coarse method's granularities (Granularity.coarse).
COARSE_GRANULARITIES = list(where(coarse=True))


@dataclass
class CompareOptions:
    random_draws: int = 5
    curve_lams: list[float] = field(default_factory=list)
    #: Faithfulness targets for more curve points (one discovery per method each).
    curve_targets: list[float] = field(default_factory=list)
    curve_scales: list[float] = field(default_factory=lambda: list(DEFAULT_CURVE_SCALES))
    search_steps: int = 8
    progress: bool = True
    #: A folder where every discovery's circuit is kept as soon as it is found, and from
    #: which a later comparison of the same configuration reads it back (compare_reuse.py).
    reuse_dir: str | Path | None = None

    def validate(self) -> CompareOptions:
        if self.random_draws < 1:
            raise NodepruneError(f"--random-draws must be >= 1, got {self.random_draws}")
        if self.search_steps < 0:
            raise NodepruneError(f"--search-steps must be >= 0, got {self.search_steps}")
        for lam in self.curve_lams:
            if not 0.0 <= lam <= 1.0:
                raise NodepruneError(f"--curve-lams values must be in [0, 1], got {lam}")
        for target in self.curve_targets:
            if not 0.0 < target <= 1.0:
                raise NodepruneError(
                    f"--curve-targets values must be in (0, 1] (the full model has "
                    f"faithfulness 1), got {target}"
                )
        for scale in self.curve_scales:
            if scale < 0:
                raise NodepruneError(f"--curve-scales values must be >= 0, got {scale}")
        return self


@dataclass
class CompareResult:
    rows: list[dict[str, Any]]
    curves: dict[str, list[dict]]
    claim: dict[str, Any]
    circuits: dict[str, Circuit]

    def curves_json(self) -> dict[str, Any]:
        return curves_document(self.curves)

    def table(self) -> str:
        return compare_table(self.rows)

    def claim_text(self) -> str:
        return claim_text(self.claim)

    def save(self, out: Path) -> list[Path]:
        """compare.json, curves.json, claim.json, compare.txt and circuits/METHOD.json."""
        documents = {
            COMPARE_FILE: self.rows,
            CURVES_FILE: self.curves_json(),
            CLAIM_FILE: self.claim,
        }
        text = self.table() + "\n\n" + self.claim_text()
        return write_outputs(out, documents, text, self.circuits)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Comparison(ClosedOnExit):
    """Shared prompts, ablation and evaluation for every method of one comparison."""

    def __init__(
        self,
        loaded: LoadedModel,
        config: DiscoveryConfig,
        options: CompareOptions | None = None,
        task: Task | None = None,
    ) -> None:
        config = config.validate()
        fitted = granularities_for_model(config.granularities, loaded.dims)
        if fitted != config.granularities:  # the default set or all, on this model
            config = dataclasses.replace(config, granularities=fitted)
        self.config = config
        self.options = (options or CompareOptions()).validate()
        self.loaded = loaded
        self.dims = loaded.dims
        torch.manual_seed(config.seed)
        #: The one set-up every method shares: hooks for every granularity (the coarse
        #: run's and the multi-granular run's), one split, one fitted ablator.
        self.bench = Workbench.for_config(loaded, self.config, task)
        self.task = self.bench.task
        self.data = self.bench.data
        self.gated = self.bench.gated
        self.ablator = self.bench.ablator
        #: Every method is evaluated with the gates of these granularities.
        self.eval_granularities = list(self.config.granularities)
        self.like = self.bench.like

    def close(self) -> None:
        self.bench.close()

    # -- shared pieces -----------------------------------------------------------
    def evaluate(self, masks: dict[str, Tensor]) -> dict[str, float]:
        gates = {
            g: masks[g].to(dtype=self.like.dtype, device=self.like.device)
            for g in self.eval_granularities
        }
        return self.bench.evaluate(gates)

    def discover(
        self, granularities: list[str], lam: float | None = None, target: float | None = None
    ) -> tuple[Circuit, Cost]:
        """The discovery's circuit and what it cost (for a circuit read back from the
        reuse folder, what it cost when it ran, where that was recorded)."""
        changes: dict[str, Any] = {"granularities": list(granularities)}
        if lam is not None:
            changes["lam"] = lam
        if target is not None:
            changes.update(target_faithfulness=target, target_kl=None, target_size=None)
        config = config_with(self.config, changes)
        saved = SavedDiscoveries(self.options.reuse_dir) if self.options.reuse_dir else None
        if saved is not None:
            with measure(self.loaded.device) as read_cost:
                found = saved.load(config, self.loaded.name)
            if found is not None:
                _log(f"[compare] reusing {found.extra[REUSED_KEY]} (the same configuration)")
                return found, saved_cost(found) or read_cost
        with measure(self.loaded.device) as cost:
            discovery = Discovery(self.bench, config)
            circuit = discovery.run(progress=self.options.progress)
            # Re-evaluated with the common gates, so that every method has the same
            # ablated reference (a coarse run's own reference keeps the embedding clean).
            circuit.extra["own_metrics"] = circuit.metrics
            circuit.metrics = self.evaluate(circuit.masks)
        if saved is not None:
            saved.save(circuit, config, cost)  # at once: a stop later loses nothing of it
        return circuit, cost

    def row(
        self, method: str, masks: dict[str, Tensor], metrics: dict[str, float], cost: Cost, **extra
    ) -> dict[str, Any]:
        point = curve_point(masks, metrics)
        return {
            "method": method,
            **({"variant": extra.pop("variant")} if "variant" in extra else {}),
            # Only the granularities the model has (no experts in a dense model's rows).
            "kept": {g: int(masks[g].sum()) for g in GRANULARITIES if masks[g].numel()},
            "total": {g: int(masks[g].numel()) for g in GRANULARITIES if masks[g].numel()},
            "fraction_kept": point["fraction_kept"],
            "metrics": metrics,
            **cost.to_dict(),
            **extra,
        }

    def profile(self, circuit: Circuit, granularities: list[str]) -> dict[str, int]:
        return {g: circuit.kept(g) for g in granularities}

    # -- methods -----------------------------------------------------------------
    def run_discovery_method(
        self, method: str, granularities: list[str]
    ) -> tuple[Circuit, dict[str, Any], list[dict]]:
        _log(f"[compare] {method}: discovery with {', '.join(granularities)}")
        circuit, cost = self.discover(granularities)
        reused = circuit.extra.pop(REUSED_KEY, None)
        row = self.row(
            method,
            circuit.masks,
            circuit.metrics,
            cost,
            granularities=list(circuit.enabled),
            lam=self.config.lam,
            own_metrics=circuit.extra["own_metrics"],
            **({"reused_from": reused} if reused is not None else {}),
        )
        points = [curve_point(circuit.masks, circuit.metrics, lam=self.config.lam)]
        for lam in self.options.curve_lams:
            if math.isclose(lam, self.config.lam):
                continue
            _log(f"[compare] {method}: curve point at lam {lam}")
            other, _ = self.discover(granularities, lam=lam)
            points.append(curve_point(other.masks, other.metrics, lam=lam))
        for target in self.options.curve_targets:
            if math.isclose(target, self.config.target_faithfulness or -1.0):
                continue
            _log(f"[compare] {method}: curve point at faithfulness target {target}")
            other, _ = self.discover(granularities, target=target)
            points.append(curve_point(other.masks, other.metrics, target_faithfulness=target))
        return circuit, row, points

    def run_baseline(
        self, baseline: Baseline, multi: Circuit
    ) -> tuple[list[dict[str, Any]], list[dict]]:
        """A baseline's rows and curve: its scores on the shared workbench, turned into
        circuits of the multi-granular circuit's sizes (and along the size knob) by the
        one selection and evaluation path (baselines/circuits.py)."""
        enabled = baseline.usable(list(multi.enabled))
        if not enabled:
            raise NodepruneError(
                f"the {baseline.name} baseline needs at least one of "
                f"{', '.join(baseline.granularities or ())} among --granularities"
            )
        profile = self.profile(multi, enabled)
        draws = self.options.random_draws if baseline.random else 1
        _log(f"[compare] {baseline.name}: {baseline.scoring.format(draws=draws)}")
        with measure(self.loaded.device) as score_cost:
            circuits = [
                ScaledCircuits(
                    baseline.scores(self.bench, ScoreRequest(tuple(enabled), self.config.seed, i)),
                    profile,
                    self.dims,
                    enabled,
                    self.evaluate,
                )
                for i in range(draws)
            ]
        if baseline.random:
            return self._draw_rows(baseline, circuits, enabled, score_cost)
        return self._matched_rows(baseline, circuits[0], enabled, multi, score_cost)

    def _matched_rows(
        self,
        baseline: Baseline,
        circuits: ScaledCircuits,
        enabled: list[str],
        multi: Circuit,
        score_cost: Cost,
    ) -> tuple[list[dict[str, Any]], list[dict]]:
        """One circuit per size: size-matched, and the smallest reaching the multi-granular
        circuit's faithfulness (bisection over the size knob)."""
        name = baseline.name
        rows = []
        common = {"granularities": enabled, "score_s": round(score_cost.wall_s, 3)}
        with measure(self.loaded.device) as cost:
            masks, metrics = circuits.at(1.0)
        cost.wall_s += score_cost.wall_s
        cost.peak_mb = max(cost.peak_mb, score_cost.peak_mb)
        rows.append(
            self.row(name, masks, metrics, cost, variant="size-matched", scale=1.0, **common)
        )
        target = float(multi.metrics["normalized_faithfulness"])
        if math.isnan(target):
            _log(
                f"[compare] {name}: the multi-granular circuit's faithfulness is undefined "
                "on these prompts, so there is no faithfulness to match"
            )
            return rows, self._curve(circuits)
        _log(f"[compare] {name}: searching the size that reaches faithfulness {target:.3f}")
        with measure(self.loaded.device) as cost:
            scale, reached = smallest_scale_reaching(
                lambda s: circuits.at(s)[1]["normalized_faithfulness"],
                target,
                FULL_SCALE,
                self.options.search_steps,
            )
            masks, metrics = circuits.at(scale)
        cost.wall_s += score_cost.wall_s
        cost.peak_mb = max(cost.peak_mb, score_cost.peak_mb)
        rows.append(
            self.row(
                name,
                masks,
                metrics,
                cost,
                variant="faithfulness-matched",
                scale=scale,
                target_normalized_faithfulness=target,
                reached=reached,
                **common,
            )
        )
        return rows, self._curve(circuits)

    def _curve(self, circuits: ScaledCircuits) -> list[dict]:
        """Every size evaluated (the grid, 1 and any search points), in order."""
        for s in scale_grid(self.options.curve_scales):
            circuits.at(s)
        return circuits.points()

    def _draw_rows(
        self,
        baseline: Baseline,
        circuits: list[ScaledCircuits],
        enabled: list[str],
        score_cost: Cost,
    ) -> tuple[list[dict[str, Any]], list[dict]]:
        """Random circuits: the mean (and spread) over the draws at the multi-granular
        sizes, and a mean curve point per grid size."""
        draws = len(circuits)
        with measure(self.loaded.device) as cost:
            results = [c.at(1.0) for c in circuits]
        cost.wall_s = (cost.wall_s + score_cost.wall_s) / draws  # per circuit
        cost.peak_mb = max(cost.peak_mb, score_cost.peak_mb)
        per_draw = [curve_point(m, met) for m, met in results]
        metrics = {
            k: float(torch.tensor([float(met[k]) for _, met in results]).mean())
            for k in results[0][1]
        }
        metrics["n"] = results[0][1]["n"]
        spread = {
            k: float(torch.tensor([float(met[k]) for _, met in results]).std())
            if draws > 1
            else 0.0
            for k in results[0][1]
            if k != "n"
        }
        row = self.row(baseline.name, results[0][0], metrics, cost)
        row["kept"] = {
            g: float(sum(int(m[g].sum()) for m, _ in results) / draws)
            for g in GRANULARITIES
            if results[0][0][g].numel()
        }
        row["fraction_kept"] = mean_point(per_draw)["fraction_kept"]
        row.update(spread=spread, draws=per_draw, granularities=enabled, seeds=draws)
        points = []
        for s in scale_grid(self.options.curve_scales):
            sampled = [curve_point(*c.at(s)) for c in circuits]
            points.append(mean_point(sampled, scale=s))
        return [row], points

    # -- everything --------------------------------------------------------------
    def run(self, methods: list[str] | None = None) -> CompareResult:
        methods = methods or list(METHODS)
        rows: list[dict[str, Any]] = []
        curves: dict[str, list[dict]] = {}
        circuits: dict[str, Circuit] = {}
        multi, row, curves["multi-granular"] = self.run_discovery_method(
            "multi-granular", self.config.granularities
        )
        rows.append(row)
        circuits["multi-granular"] = multi
        coarse = None
        if "coarse" in methods:
            coarse, row, curves["coarse"] = self.run_discovery_method(
                "coarse", COARSE_GRANULARITIES
            )
            rows.append(row)
            circuits["coarse"] = coarse
        for name, baseline in BASELINES.items():
            if name in methods:
                more, curves[name] = self.run_baseline(baseline, multi)
                rows.extend(more)
        claim = central_claim(multi, coarse) if coarse is not None else {}
        return CompareResult(rows, curves, claim, circuits)
