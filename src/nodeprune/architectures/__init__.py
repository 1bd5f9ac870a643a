"""Registry of architecture adapters, keyed by Hugging Face ``config.model_type``."""

from __future__ import annotations

from torch import nn

from ..errors import NodepruneError
from .base import ArchitectureAdapter, ModelDims
from .gpt2 import GPT2Adapter
from .gpt_neox import GPTNeoXAdapter
from .llama import LlamaAdapter

ADAPTERS: dict[str, ArchitectureAdapter] = {}
for _adapter in (GPT2Adapter(), GPTNeoXAdapter(), LlamaAdapter()):
    for _model_type in _adapter.model_types:
        ADAPTERS[_model_type] = _adapter


def supported_model_types() -> list[str]:
    return sorted(ADAPTERS)


def get_adapter(model: nn.Module) -> ArchitectureAdapter:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ADAPTERS:
        raise NodepruneError(
            f"architecture {model_type!r} is not supported; supported model types: "
            f"{', '.join(supported_model_types())}. Adding one is a small adapter in "
            "src/nodeprune/architectures/."
        )
    return ADAPTERS[model_type]


__all__ = ["ADAPTERS", "ArchitectureAdapter", "ModelDims", "get_adapter", "supported_model_types"]
