"""What a target-mode run asks for (targets.py solves it): the kind, the value, and
whether it can be met at all. Free of torch, so a config is checked without it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import NodepruneError

#: Target kinds and the config field that holds each.
TARGET_FIELDS = {
    "faithfulness": "target_faithfulness",
    "kl": "target_kl",
    "size": "target_size",
}


@dataclass(frozen=True)
class Target:
    kind: str  # a key of TARGET_FIELDS
    value: float

    def met(self, measured: float) -> bool:
        if math.isnan(measured):
            return False
        if self.kind == "faithfulness":
            return measured >= self.value
        return measured <= self.value

    def slack(self, measured: float) -> float:
        """How far inside the constraint (> 0: room to prune more), in units where 1 is
        a large miss: 0.1 of faithfulness, or the target's own size for KL and size."""
        if math.isnan(measured):
            return -1.0
        if self.kind == "faithfulness":
            return (measured - self.value) / 0.1
        return (self.value - measured) / self.value

    def training_aim(self) -> Target:
        """What the controller steers training to: a little inside a faithfulness or KL
        target (0.05 of faithfulness, a fifth of the KL), since the final selection can
        trim a circuit that is too faithful but cannot revive gates training closed."""
        if self.kind == "faithfulness":
            return Target(self.kind, min(1.0, self.value + 0.05))
        if self.kind == "kl":
            return Target(self.kind, 0.8 * self.value)
        return self

    def describe(self) -> str:
        names = {
            "faithfulness": "normalized faithfulness >=",
            "kl": "KL <=",
            "size": "units kept <=",
        }
        return f"{names[self.kind]} {self.value:g}"


def target_from_config(config: object) -> Target | None:
    """The one target a config asks for, or None (then plain ``lam`` training)."""
    given = [
        (kind, getattr(config, name))
        for kind, name in TARGET_FIELDS.items()
        if getattr(config, name, None) is not None
    ]
    if not given:
        return None
    if len(given) > 1:
        flags = ", ".join("--" + TARGET_FIELDS[k].replace("_", "-") for k, _ in given)
        raise NodepruneError(f"give at most one target, not {flags}")
    kind, value = given[0]
    value = float(value)
    if kind == "faithfulness" and not 0.0 < value <= 1.0:
        raise NodepruneError(
            f"target_faithfulness must be in (0, 1], got {value:g}: the full model itself "
            "has normalized faithfulness 1, so no circuit can be asked for more"
        )
    if kind == "kl" and not value > 0.0:
        raise NodepruneError(
            f"target_kl must be > 0, got {value:g}: only the full model has KL 0 to itself"
        )
    if kind == "size" and not 0.0 < value <= 1.0:
        raise NodepruneError(
            f"target_size must be a fraction of units kept in (0, 1], got {value:g}"
        )
    return Target(kind, value)
