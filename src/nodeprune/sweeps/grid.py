"""A sweep's grid: base discovery settings times axes, expanded into trials.

Each trial is a complete ``DiscoveryConfig`` as a plain dict, keyed by a stable hash
of that dict, so a re-run of the same sweep recognises the trials it already ran.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from ..config import LAM_G_PREFIX, DiscoveryConfig, complete_lam_g, merge_settings
from ..errors import NodepruneError
from ..granularity import GRANULARITIES
from ..suggest import closest

#: A trial's status in the result table.
FINISHED = "finished"
FAILED = "failed"
#: The plain axes a sweep may vary; per-granularity weights are the axes ``lam_g.<g>``.
PLAIN_AXES = ("model", "task", "lam", "seed")


def axis_names() -> list[str]:
    return [*PLAIN_AXES, *(LAM_G_PREFIX + g for g in GRANULARITIES)]


def config_hash(config: dict[str, Any]) -> str:
    """12 hex digits of the SHA-256 of the config as canonical JSON."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class Trial:
    """One point of the grid: the full discover config and the swept values."""

    config: dict[str, Any]
    axes: dict[str, Any]
    hash: str

    @property
    def model_key(self) -> tuple[str, str, str]:
        """Trials with the same key can share one loaded model."""
        c = self.config
        return (str(c["model"]), str(c["dtype"]), str(c["device"]))

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "axes": self.axes, "hash": self.hash}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trial:
        return cls(dict(data["config"]), dict(data["axes"]), str(data["hash"]))


def _complete(data: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in (without validating values), so equal settings hash equally
    whether or not they were spelled out."""
    config = DiscoveryConfig.from_dict(data, source="sweep").to_dict()
    defaults = DiscoveryConfig().to_dict()
    for key, value in config.items():
        # TOML's 1 and the flag's 1.0 must hash alike.
        if isinstance(defaults[key], float) and type(value) is int:
            config[key] = float(value)
    lam_g = complete_lam_g(config["lam_g"])
    config["lam_g"] = {k: float(v) if type(v) is int else v for k, v in lam_g.items()}
    return config


def _check_axis(name: str, values: Any) -> list[Any]:
    if name not in axis_names():
        raise NodepruneError(
            f"sweep axis {name!r} is not supported{closest(name, axis_names())}; "
            f"sweep over {', '.join(PLAIN_AXES)} or lam_g.<granularity>"
        )
    if not isinstance(values, list | tuple):
        values = [values]
    if not values:
        raise NodepruneError(f"sweep axis {name!r} has no values; give at least one")
    return list(values)


@dataclass
class SweepSpec:
    """``base``: discover settings shared by every trial; ``axes``: name -> values."""

    base: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.axes = {name: _check_axis(name, values) for name, values in self.axes.items()}
        # Unknown keys fail now; bad values (lam 1.5) fail their own trial only.
        _complete(self.base)

    def trials(self) -> list[Trial]:
        """The grid in a stable order, trials sharing a model next to each other."""
        names = sorted(self.axes, key=axis_names().index)
        out: list[Trial] = []
        seen: set[str] = set()
        for values in itertools.product(*(self.axes[n] for n in names)):
            point = dict(zip(names, values, strict=True))
            config = _complete(merge_settings(self.base, point))
            digest = config_hash(config)
            if digest not in seen:  # repeated axis values give the same trial once
                seen.add(digest)
                out.append(Trial(config, point, digest))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "axes": self.axes}
