"""CPR (circuit performance ratio, MIB-style): the area under the normalized-faithfulness
curve over the fraction of nodes kept, from 0 to 1.

The curve is the piecewise-linear interpolation of the measured points (trapezoid rule).
Endpoints: where no point was measured at fraction 0, the empty circuit (0, 0) is added,
since an empty circuit is the fully ablated model, whose normalized faithfulness is 0 by
definition; where none was measured at fraction 1, the full model (1, 1) is added. Several
points at the same fraction are averaged. Higher is better; a curve that is 1 everywhere
has CPR 1, but faithfulness may exceed 1, so CPR may too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import NodepruneError


def curve_points(
    fractions: Sequence[float], faithfulness: Sequence[float]
) -> list[tuple[float, float]]:
    """Sorted (fraction, faithfulness) points with the endpoints added, duplicates averaged."""
    if len(fractions) != len(faithfulness):
        raise NodepruneError(
            f"a curve needs one faithfulness per fraction, got {len(fractions)} fractions "
            f"and {len(faithfulness)} values"
        )
    by_x: dict[float, list[float]] = {}
    for x, y in zip(fractions, faithfulness, strict=True):
        x, y = float(x), float(y)
        if not (0.0 <= x <= 1.0):
            raise NodepruneError(f"fraction of nodes kept must be in [0, 1], got {x}")
        if not math.isfinite(y):
            raise NodepruneError(
                f"normalized faithfulness {y} at fraction {x} is not finite (the full and "
                "ablated models score the same on this task); drop the point or use more prompts"
            )
        by_x.setdefault(x, []).append(y)
    by_x.setdefault(0.0, [0.0])
    by_x.setdefault(1.0, [1.0])
    return [(x, sum(ys) / len(ys)) for x, ys in sorted(by_x.items())]


def cpr(fractions: Sequence[float], faithfulness: Sequence[float]) -> float:
    """Area under the piecewise-linear faithfulness curve over [0, 1]."""
    points = curve_points(fractions, faithfulness)
    return sum(
        (x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False)
    )
