"""Sweeps: a grid of discovery runs on Ray (or in-process), streamed into one table."""

from .backends import BACKENDS, LocalBackend, Resources
from .grid import SweepSpec, Trial, axis_names, config_hash
from .large_models import LoadOptions, enable_gradient_checkpointing, load_with_options
from .results import ResultTable
from .runner import SweepReport, run_sweep

__all__ = [
    "BACKENDS",
    "LoadOptions",
    "LocalBackend",
    "Resources",
    "ResultTable",
    "SweepReport",
    "SweepSpec",
    "Trial",
    "axis_names",
    "config_hash",
    "enable_gradient_checkpointing",
    "load_with_options",
    "run_sweep",
]
