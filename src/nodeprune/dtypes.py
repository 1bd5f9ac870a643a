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
#: ``auto``: bfloat16 where the hardware computes it natively, else off (resolve_autocast).
AUTOCAST_AUTO = "auto"
AUTOCAST_CHOICES: tuple[str, ...] = (AUTOCAST_AUTO, *AUTOCAST_DTYPES)
#: /proc/cpuinfo flags of x86 CPUs with bf16 matrix instructions. Without them torch
#: emulates bf16 and a training step was measured 13x slower than fp32 (README).
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty where there is none)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
                cpuinfo = handle.read()
        except OSError:
            return frozenset()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def resolve_autocast(
    name: str, device_type: str, dtype: str, flags: frozenset[str] | None = None
) -> str:
    """The ``--autocast`` value a run uses: ``name`` itself unless it is ``auto``, which
    is bfloat16 on a CPU with native bf16 instructions or a CUDA GPU that supports
    bf16, and off elsewhere or when the weights are already in a 16-bit ``dtype``."""
    if name != AUTOCAST_AUTO:
        return name
    if dtype != "float32":
        return "off"
    if device_type == "cpu":
        have = cpu_flags() if flags is None else flags
        return "bfloat16" if have & NATIVE_BF16_CPU_FLAGS else "off"
    if device_type == "cuda":
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "off"
    return "off"
