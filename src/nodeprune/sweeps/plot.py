"""The faithfulness-versus-size curve of a sweep (sweep_curve.png)."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import Any

from .grid import FINISHED


def curve_points(rows: list[dict[str, Any]]) -> dict[str, list[tuple[float, float, str]]]:
    """Finished trials as (fraction kept, normalized faithfulness, label), per model/task."""
    series: dict[str, list[tuple[float, float, str]]] = {}
    for row in rows:
        if row.get("status") != FINISHED or row.get("mean_kept_fraction") is None:
            continue
        y = row["metrics"].get("normalized_faithfulness")
        if y is None or (isinstance(y, float) and math.isnan(y)):
            continue
        config = row["config"]
        name = f"{config['model']} / {config['task']}"
        label = ", ".join(f"{k}={v}" for k, v in row["axes"].items() if k not in ("model", "task"))
        series.setdefault(name, []).append((float(row["mean_kept_fraction"]), float(y), label))
    return {k: sorted(v) for k, v in series.items()}


def write_curve(rows: list[dict[str, Any]], path: str | Path) -> bool:
    """Draw the curve; returns False (with one warning) where matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn(
            "matplotlib is not installed, so no sweep_curve.png: pip install matplotlib",
            stacklevel=2,
        )
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    series = curve_points(rows)
    for name, points in series.items():
        xs, ys, labels = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", linestyle="-", label=name)
        if len(points) <= 24:  # labels on a dense sweep are unreadable
            for x, y, label in points:
                ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if not series:
        ax.text(0.5, 0.5, "no finished trials yet", ha="center", transform=ax.transAxes)
    ax.set_xlabel("fraction of nodes kept (mean over gated granularities)")
    ax.set_ylabel("normalized faithfulness")
    ax.axhline(1.0, color="grey", linewidth=0.6, linestyle=":")
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    fig.tight_layout()
    from ..fsutil import atomic_write

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write(Path(path), buffer.getvalue())
    return True
