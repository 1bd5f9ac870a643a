"""The discovered circuit: binary masks per granularity, hierarchically consistent."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .architectures.base import ModelDims
from .errors import NodepruneError
from .granularity import GRANULARITIES, children

FORMAT_VERSION = 1


def make_consistent(masks: dict[str, Tensor], enabled: list[str]) -> dict[str, Tensor]:
    """Children of a pruned parent are pruned; a parent whose children (of any one
    enabled child granularity) are all pruned is pruned. Disabled granularities stay
    all kept and never prune anything."""
    out = {g: m.clone().bool() for g, m in masks.items()}
    # Bottom-up first (children to parents), so that a parent emptied by its
    # children then prunes its other children top-down.
    for name in reversed(list(GRANULARITIES)):
        if name not in enabled or name == "layer":
            continue
        # Each child granularity of a block is a complete view of it (all of an MLP's
        # hidden neurons, or all its output dimensions): any one fully pruned view
        # leaves the block at its ablated value. A layer's children are its two
        # halves instead, handled below.
        n_dims = len(out[name].shape)
        for child in children(name):
            if child not in enabled:
                continue
            extra = tuple(range(n_dims, out[child].dim()))
            any_kept = out[child].any(dim=extra) if extra else out[child]
            out[name] &= any_kept
    if "layer" in enabled:  # disabled halves are all kept, so they keep the layer
        out["layer"] &= out["attention_block"] | out["mlp_block"]
    for name, gran in GRANULARITIES.items():
        if gran.parent is None:
            continue
        parent = out[gran.parent]
        shape = out[name].shape
        out[name] &= parent.reshape(parent.shape + (1,) * (len(shape) - parent.dim()))
    return out


def full_masks(dims: ModelDims) -> dict[str, Tensor]:
    return {g: torch.ones(gran.shape(dims), dtype=torch.bool) for g, gran in GRANULARITIES.items()}


@dataclass
class Circuit:
    model: str
    task: str
    ablation: str
    seed: int
    dims: ModelDims
    masks: dict[str, Tensor]  # every granularity; disabled ones all True
    enabled: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    model_revision: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # -- summaries ---------------------------------------------------------------
    def kept(self, granularity: str) -> int:
        return int(self.masks[granularity].sum())

    def total(self, granularity: str) -> int:
        return int(self.masks[granularity].numel())

    def per_layer(self, granularity: str) -> list[int]:
        m = self.masks[granularity]
        if granularity == "embedding":
            return [int(m.sum())]
        return [int(x) for x in m.reshape(m.shape[0], -1).sum(1)]

    def granularities(self) -> dict[str, dict[str, Any]]:
        return {
            g: {
                "enabled": g in self.enabled,
                "kept": self.kept(g),
                "total": self.total(g),
                "per_layer": self.per_layer(g),
            }
            for g in GRANULARITIES
        }

    def is_empty(self) -> bool:
        return all(self.kept(g) == 0 for g in self.enabled)

    def is_full(self) -> bool:
        return all(self.kept(g) == self.total(g) for g in self.enabled)

    def gate_values(self, like: Tensor | None = None) -> dict[str, Tensor]:
        """Binary gates (1 kept, 0 pruned) as floats, for the gated forward pass."""
        dtype = like.dtype if like is not None else torch.float32
        device = like.device if like is not None else None
        return {g: self.masks[g].to(dtype=dtype, device=device) for g in self.enabled}

    # -- persistence -------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        import transformers

        from . import __version__

        return {
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "model_revision": self.model_revision,
            "model_dims": self.dims.to_dict(),
            "task": self.task,
            "ablation": self.ablation,
            "seed": self.seed,
            "config": self.config,
            "granularities": self.granularities(),
            "metrics": self.metrics,
            "masks": {g: self.masks[g].int().tolist() for g in self.enabled},
            "versions": {
                "nodeprune": __version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "python": platform.python_version(),
            },
            **({"extra": self.extra} if self.extra else {}),
        }

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        tmp.replace(p)
        return p

    @classmethod
    def load(cls, path: str | Path) -> Circuit:
        p = Path(path)
        if not p.is_file():
            raise NodepruneError(f"circuit file {p} does not exist")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise NodepruneError(f"{p}: not a circuit JSON file ({exc})") from exc
        return cls.from_json(data, source=str(p))

    @classmethod
    def from_json(cls, data: Any, source: str = "circuit") -> Circuit:
        if not isinstance(data, dict):
            raise NodepruneError(f"{source}: expected a JSON object")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise NodepruneError(
                f"{source}: format_version {version!r} is not supported (this nodeprune "
                f"reads version {FORMAT_VERSION})"
            )
        try:
            dims = ModelDims(**{k: int(v) for k, v in data["model_dims"].items()})
            masks = full_masks(dims)
            enabled = [g for g in GRANULARITIES if g in data["masks"]]
            for g in enabled:
                m = torch.tensor(data["masks"][g], dtype=torch.bool)
                expected = GRANULARITIES[g].shape(dims)
                if tuple(m.shape) != expected:
                    raise NodepruneError(
                        f"{source}: mask {g} has shape {tuple(m.shape)}, expected {expected}"
                    )
                masks[g] = m
            return cls(
                model=str(data["model"]),
                task=str(data["task"]),
                ablation=str(data["ablation"]),
                seed=int(data["seed"]),
                dims=dims,
                masks=masks,
                enabled=enabled,
                config=dict(data.get("config", {})),
                metrics=dict(data.get("metrics", {})),
                model_revision=data.get("model_revision"),
                extra=dict(data.get("extra", {})),
            )
        except NodepruneError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise NodepruneError(f"{source}: malformed circuit file ({exc!r})") from exc

    def check_matches(self, dims: ModelDims, model_name: str) -> None:
        if dims != self.dims:
            raise NodepruneError(
                f"circuit was found on {self.model} with {self.dims.to_dict()}, but the model "
                f"{model_name} has {dims.to_dict()}; load the model the circuit was found on"
            )
