"""The smallest circuit size (a scale on a size profile) that reaches a faithfulness."""

from __future__ import annotations

import math
from collections.abc import Callable


def smallest_scale_reaching(
    faithfulness: Callable[[float], float],
    target: float,
    full: float,
    steps: int = 8,
    start: float = 1.0,
) -> tuple[float, bool]:
    """Bisection on the scale in [0, ``full``], assuming faithfulness grows with size.

    Returns the smallest scale found whose faithfulness is >= ``target`` (within the
    bisection's resolution ``full / 2**steps`` or finer), and whether any scale reached it
    (if not: ``full``, False). ``start`` is tried first to narrow the bracket (the
    size-matched scale 1 is usually evaluated already). A non-finite faithfulness counts
    as not reaching the target.
    """

    def reaches(scale: float) -> bool:
        value = faithfulness(scale)
        return math.isfinite(value) and value >= target

    if not reaches(full):
        return full, False
    lo, hi = 0.0, full
    if 0.0 < start < full:
        if reaches(start):
            hi = start
        else:
            lo = start
    for _ in range(steps):
        mid = (lo + hi) / 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid
    return hi, True
