"""Hard-concrete gates (Louizos et al. 2018, L0 regularisation) for every granularity.

All log-alphas live in one flat parameter so that sampling every granularity is
one fused operation and the optimizer sees a single tensor.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .architectures.base import ModelDims
from .granularity import GRANULARITIES, granularities_for_model
from .hard_concrete import BETA, GAMMA, ZETA

_L0_SHIFT = BETA * math.log(-GAMMA / ZETA)


def deterministic_gate(log_alpha: Tensor) -> Tensor:
    """The gate used at evaluation: the stretched sigmoid without noise."""
    return (torch.sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def sample_gate(log_alpha: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A reparameterised hard-concrete sample (differentiable in log-alpha)."""
    u = torch.rand(log_alpha.shape, generator=generator, device=log_alpha.device)
    u = u.clamp(1e-6, 1.0 - 1e-6).to(log_alpha.dtype)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def expected_l0(log_alpha: Tensor) -> Tensor:
    """Probability that each gate is non-zero."""
    return torch.sigmoid(log_alpha - _L0_SHIFT)


class GateSet(nn.Module):
    """One hard-concrete gate per node, for each enabled granularity."""

    def __init__(
        self,
        dims: ModelDims,
        enabled: list[str],
        init_mean: float = 2.0,
        init_spread: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.dims = dims
        self.enabled = granularities_for_model(enabled, dims)
        self.shapes = {g: GRANULARITIES[g].shape(dims) for g in GRANULARITIES}
        self.slices: dict[str, slice] = {}
        offset = 0
        for g in self.enabled:
            n = GRANULARITIES[g].size(dims)
            self.slices[g] = slice(offset, offset + n)
            offset += n
        init = torch.Generator().manual_seed(seed)
        values = init_mean + init_spread * (2 * torch.rand(offset, generator=init) - 1)
        self.log_alpha = nn.Parameter(values)

    def split(self, flat: Tensor) -> dict[str, Tensor]:
        return {g: flat[s].view(self.shapes[g]) for g, s in self.slices.items()}

    def log_alphas(self) -> dict[str, Tensor]:
        return self.split(self.log_alpha)

    def sample(self, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        return self.split(sample_gate(self.log_alpha, generator))

    def deterministic(self) -> dict[str, Tensor]:
        return self.split(deterministic_gate(self.log_alpha))

    def expected_l0(self) -> dict[str, Tensor]:
        return self.split(expected_l0(self.log_alpha))

    def sizes(self) -> dict[str, int]:
        return {g: GRANULARITIES[g].size(self.dims) for g in self.enabled}


def effective_gates(
    own: dict[str, Tensor], dims: ModelDims, like: Tensor, upto: str | None = None
) -> dict[str, Tensor]:
    """Each node's gate times its ancestors' gates, for every granularity (up to and
    including ``upto``, in registry order).

    Disabled granularities count as open (1). ``like`` fixes dtype and device.
    """
    out: dict[str, Tensor] = {}
    for name, gran in GRANULARITIES.items():
        shape = gran.shape(dims)
        gate = own.get(name)
        if gate is None:
            gate = torch.ones((1,) * len(shape), dtype=like.dtype, device=like.device)
        if gran.parent is not None:
            parent = out[gran.parent]
            gate = gate * parent.reshape(parent.shape + (1,) * (len(shape) - parent.dim()))
        out[name] = gate.expand(shape) if gate.shape != shape else gate
        if name == upto:
            break
    return out
