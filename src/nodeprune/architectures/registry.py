"""The registry of architecture adapters, keyed by Hugging Face ``config.model_type``:
adding a family is its adapter module plus one line in ADAPTER_LIST.

Every model type listed here has a row in tests/architectures/test_conformance.py.
A model type that is not listed still loads when its modules follow one of these
adapters' patterns (see ``detect.py``), with a one-line notice.
"""

from __future__ import annotations

from .base import ArchitectureAdapter
from .falcon import FalconAdapter
from .gemma import GemmaAdapter
from .gpt2 import GPT2Adapter
from .gpt_neox import GPTNeoXAdapter
from .gptj import GPTJAdapter
from .llama import LlamaAdapter
from .moe import MoEAdapter, Qwen2MoeAdapter
from .phi import PhiAdapter

#: In the order unlisted model types are tried against their patterns.
ADAPTER_LIST: tuple[ArchitectureAdapter, ...] = (
    LlamaAdapter(),
    GemmaAdapter(),
    GPT2Adapter(),
    GPTNeoXAdapter(),
    PhiAdapter(),
    GPTJAdapter(),
    FalconAdapter(),
    MoEAdapter(),
    Qwen2MoeAdapter(),
)
ADAPTERS: dict[str, ArchitectureAdapter] = {
    t: adapter for adapter in ADAPTER_LIST for t in adapter.model_types
}


def supported_model_types() -> list[str]:
    return sorted(ADAPTERS)
