"""Reports: figures and a self-contained HTML page of a run folder."""

from __future__ import annotations

from .build import FIGURES_DIR, REPORT_FILE, build_report

__all__ = ["FIGURES_DIR", "REPORT_FILE", "build_report"]
