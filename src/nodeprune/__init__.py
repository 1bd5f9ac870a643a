"""nodeprune: circuit discovery by multi-granular node pruning.

The public names below are imported on first use (PEP 562), not with the package: every
``nodeprune.*`` import, the ``nodeprune`` command's included, runs this file, and the
names' modules import torch, which alone takes seconds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

#: public name -> the module that defines it
_LAZY = {
    "Circuit": ".circuit",
    "Discovery": ".discovery",
    "discover": ".discovery",
    "DiscoveryConfig": ".config",
    "NodepruneError": ".errors",
    "load_model": ".models",
    "wrap_model": ".models",
}

if TYPE_CHECKING:  # for type checkers and IDEs: the names as if imported eagerly
    from .circuit import Circuit
    from .config import DiscoveryConfig
    from .discovery import Discovery, discover
    from .errors import NodepruneError
    from .models import load_model, wrap_model


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'nodeprune' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "Circuit",
    "Discovery",
    "DiscoveryConfig",
    "NodepruneError",
    "__version__",
    "discover",
    "load_model",
    "wrap_model",
]
