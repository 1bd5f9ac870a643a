"""Figures that put a circuit next to others: faithfulness curves, stability across
seeds, and ROC curves against published circuits."""

from __future__ import annotations

from typing import Any

import numpy as np

from .plotting import Plot, layer_ticks, layer_width, new_figure, png_bytes

METHOD_COLOURS = {
    "multi-granular": "#1f77b4",
    "coarse": "#ff7f0e",
    "attribution": "#2ca02c",
    "random": "#7f7f7f",
}


def faithfulness_curves(curves: dict[str, Any]) -> Plot | None:
    """Normalized faithfulness against the fraction of nodes kept, one line per method."""
    methods = curves.get("methods", {})
    if not methods:
        return None
    area = curves.get("area", {})
    fig = new_figure(9.0, 4.8)
    ax = fig.add_subplot()
    smallest = 1.0
    for method, points in methods.items():
        pts = sorted(points, key=lambda p: p["fraction_kept"])
        x = [p["fraction_kept"] for p in pts]
        y = [p["normalized_faithfulness"] for p in pts]
        smallest = min([smallest] + [v for v in x if v > 0])
        label = method
        if method in area:
            label += f"  (CPR {area[method]['cpr']:.3f}, CMD {area[method]['cmd']:.3f})"
        ax.plot(x, y, marker="o", ms=4, label=label, color=METHOD_COLOURS.get(method))
    ax.axhline(1.0, color="#888888", lw=0.8, ls="--")
    if smallest < 0.05:  # small circuits would be squeezed against the axis
        ax.set_xscale("log")
    ax.set_xlabel("fraction of nodes kept")
    ax.set_ylabel("normalized faithfulness")
    ax.legend(fontsize=9)
    ax.set_title("Faithfulness against circuit size", fontsize=11)
    caption = (
        "Each point is one circuit of a sweep; CPR is the area under the curve, CMD the "
        "area between the curve and 1 (lower is better), over the fraction of nodes kept."
    )
    return Plot("faithfulness_curve", "Faithfulness curve", caption, png_bytes(fig))


def stability_figure(result: dict[str, Any], n_layers: int, n_heads: int) -> Plot | None:
    """Left: how often each head is kept across runs. Right: pairwise Jaccard per
    granularity (bar: mean, tick: minimum)."""
    grans = result.get("granularities", {})
    if not grans:
        return None
    heads = grans.get("attention_head", {}).get("keep_frequency")
    width = layer_width(n_layers, 0.4, 6.5) if heads is not None else 8.0
    fig = new_figure(width, min(9.0, 2.2 + 0.35 * n_heads))
    if heads is not None:
        grid = fig.add_gridspec(1, 2, width_ratios=[max(2.0, n_layers / 6), 1.4])
        ax = fig.add_subplot(grid[0])
        freq = np.asarray(heads, dtype=float)
        image = ax.imshow(freq.T, aspect="auto", cmap="magma", vmin=0, vmax=1)
        fig.colorbar(image, ax=ax, label="keep frequency", shrink=0.9, pad=0.01)
        layer_ticks(ax, n_layers)
        ax.set_yticks(range(n_heads))
        ax.set_xlabel("layer")
        ax.set_ylabel("head")
        ax.set_title(f"Heads: share of the {result['n_runs']} runs keeping each", fontsize=10)
        bars = fig.add_subplot(grid[1])
    else:
        bars = fig.add_subplot()
    names = list(grans)
    means = [grans[g]["jaccard_mean"] for g in names]
    mins = [grans[g]["jaccard_min"] for g in names]
    y = np.arange(len(names))
    bars.barh(y, means, color="#3b7dd8")
    bars.scatter(mins, y, marker="|", s=200, color="black", label="minimum pair")
    bars.set_yticks(y)
    bars.set_yticklabels([g.replace("_", " ") for g in names], fontsize=8)
    bars.invert_yaxis()
    bars.set_xlim(0, 1.02)
    bars.set_xlabel("Jaccard overlap of kept nodes")
    bars.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    bars.set_title("Pairwise overlap (mean)", fontsize=10)
    caption = "How much of the circuit survives a change of seed."
    return Plot("stability", "Stability across runs", caption, png_bytes(fig))


def roc_figure(scores: dict[str, dict[str, Any]]) -> Plot | None:
    """ROC curves of the head scores against each published circuit."""
    curves = {name: s for name, s in scores.items() if s.get("roc")}
    if not curves:
        return None
    fig = new_figure(5.8, 5.0)
    ax = fig.add_subplot()
    for name, s in curves.items():
        ax.plot(s["roc"]["fpr"], s["roc"]["tpr"], label=f"{name} (AUC {s['roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="#aaaaaa", lw=0.8, ls="--")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Head scores vs published circuits", fontsize=11)
    caption = "ROC of the heads' final log-alpha against each published GPT-2 small circuit."
    return Plot("roc", "ROC against published circuits", caption, png_bytes(fig))
