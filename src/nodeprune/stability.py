"""Stability across runs (seeds): how often each node is kept, and how much the kept
sets of two runs overlap (pairwise Jaccard), per granularity."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from .circuit import Circuit
from .errors import NodepruneError
from .granularity import GRANULARITIES, where
from .metrics.jaccard import jaccard
from .run_files import circuit_path

#: Granularities whose keep counts are stored node by node; the neuron-level ones are
#: summarised per layer and by a histogram (tens of thousands of nodes).
PER_NODE = where(neurons=False)


def load_runs(paths: list[str | Path]) -> list[Circuit]:
    return [Circuit.load(circuit_path(p)) for p in paths]


def stability(circuits: list[Circuit], labels: list[str] | None = None) -> dict[str, Any]:
    """Keep frequency and pairwise Jaccard overlap per granularity that every run gated."""
    if len(circuits) < 2:
        raise NodepruneError("stability needs at least two runs (e.g. the same task, two seeds)")
    dims = circuits[0].dims
    for c in circuits[1:]:
        if c.dims != dims:
            raise NodepruneError(
                f"runs are from different models ({circuits[0].model} {dims.to_dict()} vs "
                f"{c.model} {c.dims.to_dict()}); compare runs of one model"
            )
    labels = labels or [f"{c.task} seed {c.seed}" for c in circuits]
    n = len(circuits)
    common = [g for g in GRANULARITIES if all(g in c.enabled for c in circuits)]
    out: dict[str, Any] = {
        "runs": labels,
        "model": circuits[0].model,
        "tasks": sorted({c.task for c in circuits}),
        "seeds": [c.seed for c in circuits],
        "n_runs": n,
        "granularities": {},
    }
    effective = [c.effective_masks() for c in circuits]
    for g in common:
        masks = [e[g].numpy().astype(bool) for e in effective]
        counts = np.sum(masks, axis=0)
        pairs = {
            f"{i}-{j}": jaccard(masks[i], masks[j]) for i, j in itertools.combinations(range(n), 2)
        }
        values = list(pairs.values())
        sizes = [int(m.sum()) for m in masks]
        size_pairs = [(sizes[i], sizes[j]) for i, j in itertools.combinations(range(n), 2)]
        entry: dict[str, Any] = {
            "total": int(counts.size),
            "kept_per_run": sizes,
            "jaccard_pairs": pairs,
            "jaccard_mean": float(np.mean(values)),
            "jaccard_min": float(np.min(values)),
            # What the sizes alone allow: two sets of a <= b nodes overlap at most a / b;
            # and what chance gives (random sets of those sizes), so that a mean Jaccard
            # is read as agreement on which nodes, beyond size and beyond chance.
            "jaccard_size_ceiling": float(np.mean([_ceiling(a, b) for a, b in size_pairs])),
            "jaccard_chance": float(
                np.mean([_chance(a, b, int(counts.size)) for a, b in size_pairs])
            ),
            # fraction of nodes kept by exactly k of the n runs, k = 0..n
            "kept_by_k_runs": [float(np.mean(counts == k)) for k in range(n + 1)],
        }
        if g in PER_NODE:
            entry["keep_frequency"] = (counts / n).tolist()
        else:
            per_layer = counts.reshape(counts.shape[0], -1)
            entry["keep_frequency_per_layer"] = (per_layer.mean(axis=1) / n).tolist()
        out["granularities"][g] = entry
    faith = [float(c.metrics.get("normalized_faithfulness", float("nan"))) for c in circuits]
    out["faithfulness"] = {
        "per_run": faith,
        "mean": float(np.mean(faith)),
        "sd": float(np.std(faith, ddof=1)),
    }
    out["goals"] = stability_goals(out)
    return out


def _ceiling(a: int, b: int) -> float:
    """The largest Jaccard overlap two sets of a and b nodes can have."""
    return 1.0 if max(a, b) == 0 else min(a, b) / max(a, b)


def _chance(a: int, b: int, total: int) -> float:
    """The Jaccard overlap of two random sets of a and b of ``total`` nodes (their
    expected intersection ab/total over the union it leaves)."""
    if a == 0 and b == 0:
        return 1.0
    shared = a * b / total
    return shared / (a + b - shared)


#: What "stable across seeds" asks of the runs (issue-level goals, shown to users so a
#: circuit's stability is read against a standard): the test faithfulness's standard
#: deviation at most, and the mean pairwise Jaccard of the kept sets at least.
STABILITY_GOALS = {
    "faithfulness_sd": 0.03,
    "attention_head": 0.7,
    "mlp_neuron": 0.6,
}


def stability_goals(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each goal of STABILITY_GOALS: the measured value and whether it is met."""
    goals: dict[str, dict[str, Any]] = {}
    sd = result["faithfulness"]["sd"]
    goals["faithfulness_sd"] = {
        "goal": f"<= {STABILITY_GOALS['faithfulness_sd']}",
        "value": sd,
        "met": bool(sd <= STABILITY_GOALS["faithfulness_sd"]),
    }
    for g in ("attention_head", "mlp_neuron"):
        entry = result["granularities"].get(g)
        if entry is None:
            continue
        goals[f"{g}_jaccard"] = {
            "goal": f">= {STABILITY_GOALS[g]}",
            "value": entry["jaccard_mean"],
            "met": bool(entry["jaccard_mean"] >= STABILITY_GOALS[g]),
        }
    return goals


def save_stability(result: dict[str, Any], path: str | Path) -> Path:
    from .fsutil import write_json

    return write_json(Path(path), result)


def stability_table(result: dict[str, Any]) -> str:
    n = result["n_runs"]
    rows = [
        f"{result['n_runs']} runs of {result['model']} ({', '.join(result['tasks'])}), "
        f"seeds {result['seeds']}",
        "",
        f"{'granularity':<18}{'kept per run':>22}{'Jaccard mean':>14}{'min':>8}"
        f"{'size limit':>12}{'chance':>8}{'kept by all':>13}{'by none':>9}",
    ]
    for g, e in result["granularities"].items():
        kept = "/".join(str(k) for k in e["kept_per_run"])
        by_k = e["kept_by_k_runs"]
        rows.append(
            f"{g:<18}{kept:>22}{e['jaccard_mean']:>14.3f}{e['jaccard_min']:>8.3f}"
            f"{e['jaccard_size_ceiling']:>12.3f}{e['jaccard_chance']:>8.3f}"
            f"{100 * by_k[n]:>12.1f}%{100 * by_k[0]:>8.1f}%"
        )
    rows.append(
        "(size limit: the mean Jaccard the kept counts alone allow, smaller over larger; "
        "chance: that of random sets of those counts)"
    )
    faith = result.get("faithfulness")
    if faith is not None:
        values = ", ".join(f"{v:.3f}" for v in faith["per_run"])
        rows += ["", f"normalized faithfulness: {values} (mean {faith['mean']:.3f}, "
                 f"sd {faith['sd']:.3f})"]  # fmt: skip
    goals = result.get("goals") or {}
    if goals:
        rows.append("goals: " + "; ".join(
            f"{name} {e['value']:.3f} ({e['goal']}: {'met' if e['met'] else 'NOT met'})"
            for name, e in goals.items()
        ))  # fmt: skip
    return "\n".join(rows)
