"""Reports: figures and a self-contained HTML page of a run folder.

``build_report`` and friends are imported on first use: they need matplotlib, an extra
(``nodeprune[plots]``), and this package is imported by the command line's start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .build import FIGURES_DIR, REPORT_FILE, build_report

_LAZY = ("FIGURES_DIR", "REPORT_FILE", "build_report")


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import build

    return getattr(build, name)


__all__ = ["FIGURES_DIR", "REPORT_FILE", "build_report"]
