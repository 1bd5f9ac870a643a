"""CMD (circuit-model distance, MIB-style): the area between the normalized-faithfulness
curve and 1, i.e. the integral of |1 - f| over the fraction of nodes kept in [0, 1].

The curve, its interpolation and its endpoints are those of :func:`nodeprune.metrics.cpr.
curve_points` (piecewise linear, (0, 0) and (1, 1) added where not measured). The integral
is exact for the piecewise-linear curve: a segment that crosses f = 1 is split at the
crossing. Lower is better; 0 means the circuit matches the full model at every size.
"""

from __future__ import annotations

from collections.abc import Sequence

from .cpr import curve_points


def _segment_distance(width: float, d0: float, d1: float) -> float:
    """Integral of |d| over a segment where d goes linearly from d0 to d1."""
    if d0 * d1 >= 0:
        return width * (abs(d0) + abs(d1)) / 2
    crossing = d0 / (d0 - d1)  # where d is 0, as a fraction of the segment
    return width * (abs(d0) * crossing + abs(d1) * (1 - crossing)) / 2


def cmd(fractions: Sequence[float], faithfulness: Sequence[float]) -> float:
    """Area between the piecewise-linear faithfulness curve and 1 over [0, 1]."""
    points = curve_points(fractions, faithfulness)
    return sum(
        _segment_distance(x1 - x0, 1 - y0, 1 - y1)
        for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False)
    )
