"""Figures of one circuit: what it keeps per layer, per head and per neuron, and how
training went."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.patches import Rectangle

from ..circuit import Circuit
from ..granularity import GRANULARITIES, where
from ..metrics.ground_truth import head_scores
from .plotting import (
    MAX_ANNOTATED_LAYERS,
    Plot,
    cell_text_colour,
    layer_ticks,
    layer_width,
    new_figure,
    png_bytes,
)

#: Granularities with one or more nodes per layer (the embedding has none).
LAYERED = list(where(per_layer=True))


def kept_fraction_per_layer(circuit: Circuit) -> Plot:
    """Heat map: rows are the enabled granularities, columns the layers."""
    rows = [g for g in LAYERED if g in circuit.enabled]
    n_layers = circuit.dims.n_layers
    values = np.array(
        [
            np.asarray(circuit.per_layer(g), dtype=float) / (circuit.total(g) / n_layers)
            for g in rows
        ]
    ).reshape(len(rows), n_layers)
    fig = new_figure(layer_width(n_layers), 1.4 + 0.5 * max(len(rows), 1))
    ax = fig.add_subplot()
    image = ax.imshow(values, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([GRANULARITIES[g].label for g in rows], fontsize=9)
    layer_ticks(ax, n_layers)
    ax.set_xlabel("layer")
    if n_layers <= MAX_ANNOTATED_LAYERS:
        size = 7 if n_layers <= 24 else 6
        for r in range(len(rows)):
            for c in range(n_layers):
                v = values[r, c]
                ax.text(
                    c, r, f"{100 * v:.0f}", ha="center", va="center", fontsize=size,
                    color=cell_text_colour(v, 0.0, 1.0),
                )  # fmt: skip
    fig.colorbar(image, ax=ax, label="fraction kept", shrink=0.9, pad=0.01)
    ax.set_title("Kept fraction per layer (numbers: percent kept)", fontsize=11)
    caption = (
        "Each row is an enabled granularity, each column a layer; colour and number give "
        "the share of that layer's nodes the circuit keeps."
    )
    return Plot("kept_per_layer", "Kept fraction per layer", caption, png_bytes(fig))


def head_grid(circuit: Circuit, reference_heads: set[tuple[int, int]] | None = None) -> Plot:
    """Layer x head grid; colour is the final log-alpha (capped by the attention block's
    and the layer's) where the circuit stores scores, kept heads are outlined."""
    n_layers, n_heads = circuit.dims.n_layers, circuit.dims.n_heads
    kept = circuit.effective_masks()["attention_head"].numpy().astype(bool)
    scores = head_scores(circuit)
    fig = new_figure(layer_width(n_layers, 0.45, 2.0), min(10.0, 1.6 + 0.38 * n_heads))
    ax = fig.add_subplot()
    if scores is not None:
        limit = float(min(10.0, max(1.0, np.abs(scores).max())))
        image = ax.imshow(scores.T, aspect="auto", cmap="RdBu", vmin=-limit, vmax=limit)
        fig.colorbar(image, ax=ax, label="final log-alpha (>0 open)", shrink=0.9, pad=0.01)
        what = "colour: final gate log-alpha (blue open, red closed)"
    else:
        ax.imshow(kept.T.astype(float), aspect="auto", cmap="Greys", vmin=-0.3, vmax=1.6)
        what = "dark: kept (the circuit file stores no scores)"
    for layer, head in zip(*np.nonzero(kept), strict=True):
        ax.add_patch(
            Rectangle((layer - 0.5, head - 0.5), 1, 1, fill=False, edgecolor="black", lw=1.8)
        )
    if reference_heads:
        xs, ys = zip(*sorted(reference_heads), strict=True)
        ax.scatter(xs, ys, marker="*", s=60, c="gold", edgecolors="black", linewidths=0.6,
                   label="published circuit head", zorder=3)  # fmt: skip
        ax.legend(loc="upper left", bbox_to_anchor=(0, -0.12), fontsize=8, frameon=False)
    layer_ticks(ax, n_layers)
    ax.set_yticks(range(n_heads))
    ax.set_yticklabels([str(h) for h in range(n_heads)], fontsize=8)
    ax.set_xlabel("layer")
    ax.set_ylabel("head")
    ax.set_title(f"Attention heads: {int(kept.sum())} of {kept.size} kept (outlined)", fontsize=11)
    caption = f"Rows are heads, columns layers; black outline: kept; {what}."
    return Plot("head_grid", "Heads kept, layer x head", caption, png_bytes(fig))


def mlp_neurons(circuit: Circuit) -> Plot:
    """Bars of MLP hidden neurons (and output dimensions, when gated) kept per layer."""
    dims = circuit.dims
    panels = [("mlp_neuron", dims.d_mlp, "MLP hidden neurons")]
    if "mlp_output" in circuit.enabled:
        panels.append(("mlp_output", dims.d_model, "MLP output dimensions"))
    fig = new_figure(layer_width(dims.n_layers), 2.6 * len(panels) + 0.4)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    x = np.arange(dims.n_layers)
    for ax, (g, size, label) in zip(axes, panels, strict=True):
        counts = np.asarray(circuit.per_layer(g), dtype=float)
        gated = g in circuit.enabled
        ax.bar(x, counts, color="#3b7dd8" if gated else "#bbbbbb", width=0.8)
        ax.axhline(size, color="#888888", lw=0.8, ls="--")
        ax.set_ylim(0, size * 1.15)
        ax.set_xlim(-0.6, dims.n_layers - 0.4)
        if dims.n_layers <= MAX_ANNOTATED_LAYERS:
            for xi, c in zip(x, counts, strict=True):
                ax.text(xi, c + size * 0.01, f"{100 * c / size:.0f}%", ha="center",
                        va="bottom", fontsize=6.5 if dims.n_layers > 24 else 7.5)  # fmt: skip
        layer_ticks(ax, dims.n_layers)
        ax.set_ylabel(f"kept (of {size})", fontsize=9)
        note = "" if gated else " (not gated: whole blocks only)"
        ax.set_title(f"{label} kept per layer{note}", fontsize=10)
    axes[-1].set_xlabel("layer")
    caption = "Count of kept neurons in each layer; labels give the percentage of the layer."
    return Plot("mlp_neurons", "MLP neurons kept per layer", caption, png_bytes(fig))


def attention_neurons(circuit: Circuit) -> Plot | None:
    """Fraction of each head's output dimensions kept (layer x head)."""
    if "attention_neuron" not in circuit.enabled:
        return None
    dims = circuit.dims
    frac = circuit.effective_masks()["attention_neuron"].float().mean(-1).numpy()
    fig = new_figure(layer_width(dims.n_layers, 0.45, 2.0), min(10.0, 1.6 + 0.38 * dims.n_heads))
    ax = fig.add_subplot()
    image = ax.imshow(frac.T, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label=f"fraction of {dims.head_dim} dims kept", shrink=0.9,
                 pad=0.01)  # fmt: skip
    if dims.n_layers <= MAX_ANNOTATED_LAYERS and dims.n_heads <= 32:
        for layer in range(dims.n_layers):
            for head in range(dims.n_heads):
                v = frac[layer, head]
                if v > 0:
                    ax.text(layer, head, f"{round(v * dims.head_dim)}", ha="center",
                            va="center", fontsize=6, color=cell_text_colour(v, 0, 1))  # fmt: skip
    layer_ticks(ax, dims.n_layers)
    ax.set_yticks(range(dims.n_heads))
    ax.set_xlabel("layer")
    ax.set_ylabel("head")
    ax.set_title("Attention neurons kept per head (numbers: dimensions kept)", fontsize=11)
    caption = (
        "Within-head sparsity: how many of each head's output dimensions the circuit keeps "
        "(empty cells: head pruned)."
    )
    return Plot("attention_neurons", "Attention neurons kept per head", caption, png_bytes(fig))


def training_history(history: list[dict[str, Any]]) -> Plot | None:
    """Loss and KL, and the kept fraction of each granularity, against the step."""
    if not history:
        return None
    steps = [h["step"] for h in history]
    fig = new_figure(13.0, 3.8)
    left, right = fig.subplots(1, 2)
    left.plot(steps, [h["loss"] for h in history], color="#333333", label="loss")
    left.set_xlabel("step")
    left.set_ylabel("loss")
    kl_axis = left.twinx()
    kl = [h["kl"] for h in history]
    # Each logged KL is of one sampled circuit on one batch: noisy. A running mean over
    # about a tenth of the log shows the trend.
    kl_axis.plot(steps, kl, color="#d62728", alpha=0.3, lw=0.8)
    kl_axis.plot(
        steps, _running_mean(kl), color="#d62728", label="KL(full || circuit), running mean"
    )
    kl_axis.set_ylabel("KL", color="#d62728")
    if min(kl) > 0 and max(kl) / min(kl) > 100:
        kl_axis.set_yscale("log")
    lines = [
        ln for ln in left.get_lines() + kl_axis.get_lines() if not ln.get_label().startswith("_")
    ]
    left.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="upper right")
    left.set_title("Training loss and KL", fontsize=10)
    granularities = [g for g in GRANULARITIES if g in history[0].get("kept", {})]
    for g in granularities:
        right.plot(
            steps, [h["kept"].get(g, math.nan) for h in history], label=GRANULARITIES[g].label
        )
    right.set_ylim(-0.03, 1.03)
    right.set_xlabel("step")
    right.set_ylabel("fraction with log-alpha > 0")
    right.legend(fontsize=8, loc="lower left", ncol=2)
    right.set_title("Gates open during training", fontsize=10)
    caption = (
        "Left: total loss and KL of the sampled circuit per logged step. Right: share of each "
        "granularity's gates that are open (log-alpha > 0), before hierarchical clean-up."
    )
    return Plot("history", "Training history", caption, png_bytes(fig))


def _running_mean(values: list[float]) -> list[float]:
    window = max(1, len(values) // 10)
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out
