"""Architecture adapters: how nodeprune finds its sites in each model family.

The registry (model type -> adapter) is :mod:`.registry`; :func:`get_adapter` picks a
model's adapter (:mod:`.detect`).
"""

from __future__ import annotations

from .base import ArchitectureAdapter, ModelDims
from .detect import get_adapter
from .registry import ADAPTER_LIST, ADAPTERS, supported_model_types

__all__ = [
    "ADAPTERS",
    "ADAPTER_LIST",
    "ArchitectureAdapter",
    "ModelDims",
    "get_adapter",
    "supported_model_types",
]
