"""The settings of the edge phase. The prompts, their seed and sizes, the task and the
ablation are the node circuit's (its saved config): the edge phase refines that circuit
on the same data; these are the training settings, with node discovery's defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import NodepruneError
from ..target_spec import Target, target_from_config


@dataclass
class EdgeConfig:
    #: Weight of the sparsity term (the loss is (1 - lam) * KL + lam * E[L0] / n_edges).
    lam: float = 0.95
    sparsity_warmup: float = 0.33
    steps: int = 150
    batch_size: int = 16
    lr: float = 0.5
    grad_clip: float = 1.0
    init_log_alpha: float = 2.0
    init_spread: float = 0.5
    seed: int = 0
    #: Target modes, as in node discovery; size is the fraction of candidate edges kept.
    target_faithfulness: float | None = None
    target_kl: float | None = None
    target_size: float | None = None
    target_every: int = 10
    target_rate: float = 0.5

    def validate(self) -> EdgeConfig:
        if not 0.0 <= self.lam < 1.0:
            raise NodepruneError(f"edge lam must be in [0, 1), got {self.lam}; pass e.g. 0.9")
        for name in ("steps", "batch_size", "target_every"):
            if getattr(self, name) < 1:
                raise NodepruneError(f"edge {name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise NodepruneError(f"edge lr must be > 0, got {self.lr}")
        if not 0.0 <= self.sparsity_warmup <= 1.0:
            raise NodepruneError(
                f"edge sparsity_warmup must be in [0, 1], got {self.sparsity_warmup}"
            )
        self.target()
        return self

    def target(self) -> Target | None:
        return target_from_config(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "edge config") -> EdgeConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise NodepruneError(f"{source} has unknown settings {', '.join(unknown)}")
        return cls(**data).validate()
