"""Matplotlib helpers: figures drawn on the Agg canvas (no pyplot, no global state),
saved as PNG bytes without metadata that names a website."""

from __future__ import annotations

import io
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 110
#: Above this many layers, per-cell numbers no longer fit and are left out.
MAX_ANNOTATED_LAYERS = 48


@dataclass
class Plot:
    """One figure of the report: a file stem, a caption and the PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def layer_width(n_layers: int, per_layer: float = 0.42, base: float = 2.5) -> float:
    """Figure width that grows with the number of layers, within a page's width."""
    return min(18.0, max(7.0, base + per_layer * n_layers))


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def layer_ticks(ax: Axes, n_layers: int, axis: str = "x") -> None:
    """Every layer labelled up to 32 layers, every other one beyond."""
    step = 1 if n_layers <= 32 else 2
    ticks = list(range(0, n_layers, step))
    if axis == "x":
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks], fontsize=8)
    else:
        ax.set_yticks(ticks)
        ax.set_yticklabels([str(t) for t in ticks], fontsize=8)


def cell_text_colour(value: float, vmin: float, vmax: float) -> str:
    """Black on light cells, white on dark ones (viridis is dark at the low end)."""
    frac = 0.0 if vmax == vmin else (value - vmin) / (vmax - vmin)
    return "white" if frac < 0.55 else "black"
