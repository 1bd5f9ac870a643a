"""The ``--dtype`` and ``--autocast`` names and the torch dtypes they stand for.

No torch import at module level: the command line validates these names before any
torch is loaded (``nodeprune --help`` must answer at once); a look-up imports it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class _TorchDtypes(Mapping[str, Any]):
    """Name -> torch dtype (None for ``off``); torch is imported on the first look-up."""

    def __init__(self, names: dict[str, str | None]) -> None:
        self._names = names

    def __getitem__(self, key: str) -> Any:
        name = self._names[key]
        if name is None:
            return None
        import torch

        return getattr(torch, name)

    def __contains__(self, key: object) -> bool:
        return key in self._names  # a name check (validating a config) needs no torch

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


#: ``--dtype`` values: the dtype of the model weights.
DTYPES: Mapping[str, Any] = _TorchDtypes(
    {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}
)
#: ``--autocast`` values: the dtype torch.autocast runs the training passes in.
AUTOCAST_DTYPES: Mapping[str, Any] = _TorchDtypes(
    {"off": None, "bfloat16": "bfloat16", "float16": "float16"}
)
