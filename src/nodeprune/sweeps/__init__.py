"""Sweeps: a grid of discovery runs on Ray (or in-process), streamed into one table.

The names below are imported on first use: ``nodeprune sweep``'s flags come from
``nodeprune.cli.sweep`` and ``sweeps.settings``, and building them must not import
torch (see nodeprune/__init__.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the submodule that defines it
_LAZY = {
    "BACKENDS": ".backends",
    "LocalBackend": ".backends",
    "Resources": ".backends",
    "SweepSpec": ".grid",
    "Trial": ".grid",
    "axis_names": ".grid",
    "config_hash": ".grid",
    "LoadOptions": "..large_models",
    "enable_gradient_checkpointing": "..large_models",
    "load_with_options": "..large_models",
    "ResultTable": ".results",
    "SweepReport": ".runner",
    "run_sweep": ".runner",
}

if TYPE_CHECKING:
    from ..large_models import LoadOptions, enable_gradient_checkpointing, load_with_options
    from .backends import BACKENDS, LocalBackend, Resources
    from .grid import SweepSpec, Trial, axis_names, config_hash
    from .results import ResultTable
    from .runner import SweepReport, run_sweep


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


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
