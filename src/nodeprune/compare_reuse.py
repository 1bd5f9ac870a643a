"""Discoveries a comparison already ran, kept on disk so that a stopped comparison
continues where it stopped.

A comparison with curve targets runs two discoveries per target (15-35 minutes each
on two CPU cores), so the whole of it can outlast one sitting. With a folder, every
discovery's circuit is written there as soon as it is found, under a key of its whole
configuration, and a later comparison asking for the same configuration on the same
model reads it back instead of training again. Only an identical configuration is
reused (model, task, prompts, seeds, granularities, target: every setting), and the
circuit's own record of what it cost is kept with it, so the comparison's table shows
what the run cost when it ran.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .baselines.cost import Cost
from .circuit import Circuit
from .config import DiscoveryConfig

#: Where a circuit's file keeps the configuration it is reused for and what its
#: discovery cost when it ran (as measured around it by the comparison).
CONFIG_KEY = "compare_config"
COST_KEY = "compare_cost"
#: Set in memory only, on a circuit read back: the file it came from.
REUSED_KEY = "reused_from"


class SavedDiscoveries:
    """A folder of circuits keyed by the comparison's configuration of their discovery."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, settings: dict[str, Any]) -> Path:
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        return self.folder / f"circuit-{key}.json"

    def load(self, config: DiscoveryConfig, model: str) -> Circuit | None:
        """The circuit found earlier with exactly ``config`` on ``model`` (marked with
        REUSED_KEY), or None."""
        settings = config.to_dict()
        path = self.path(settings)
        if not path.exists():
            return None
        circuit = Circuit.load(path)
        if circuit.extra.get(CONFIG_KEY) != settings or circuit.model != model:
            return None  # a key collision, or a file edited by hand: run it again
        circuit.extra[REUSED_KEY] = str(path)
        return circuit

    def save(self, circuit: Circuit, config: DiscoveryConfig, cost: Cost) -> Path:
        """Keep ``circuit`` for ``config``, with what its discovery cost."""
        circuit.extra[CONFIG_KEY] = config.to_dict()
        circuit.extra[COST_KEY] = cost.to_dict()
        return circuit.save(self.path(circuit.extra[CONFIG_KEY]))


def saved_cost(circuit: Circuit) -> Cost | None:
    """What a reused circuit's discovery cost when it ran (None where not recorded)."""
    record = circuit.extra.get(COST_KEY)
    if not record:
        return None
    peak = float(record["peak_mb"])
    return Cost(
        wall_s=float(record["wall_s"]),
        peak_mb=peak,
        start_mb=peak - float(record["peak_above_start_mb"]),
        memory_kind=str(record["memory_kind"]),
    )
