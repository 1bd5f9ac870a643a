"""The discovered circuit: binary masks per granularity, hierarchically consistent."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .architectures.base import ModelDims
from .errors import NodepruneError
from .granularity import GRANULARITIES, children
from .suggest import closest

FORMAT_VERSION = 1


def make_consistent(masks: dict[str, Tensor], enabled: list[str]) -> dict[str, Tensor]:
    """Children of a pruned parent are pruned; a parent whose children (of any one
    enabled child granularity) are all pruned is pruned. Disabled granularities stay
    all kept and never prune anything."""
    out = {g: m.clone().bool() for g, m in masks.items()}
    # Bottom-up first (children to parents), so that a parent emptied by its
    # children then prunes its other children top-down.
    for name in reversed(list(GRANULARITIES)):
        if name not in enabled:
            continue
        if GRANULARITIES[name].made_of_children:
            # A layer is its two halves: pruned when both are (disabled halves are all
            # kept, so they keep it).
            kept = torch.zeros_like(out[name])
            for child in children(name):
                kept |= _any_kept(out[child], out[name].dim())
            out[name] &= kept
            continue
        # Each child granularity of a block is a complete view of it (all of an MLP's
        # hidden neurons, or all its output dimensions): any one fully pruned view
        # leaves the block at its ablated value. Children that are parts of it
        # together (``part_of``: a Qwen2-MoE MLP's shared-expert neurons and routed
        # experts) prune it only when all of them are pruned; a part the model lacks
        # (no experts in a dense model) is no part of it, a disabled one is kept.
        parts: dict[str, Tensor] = {}
        for child in children(name):
            group = GRANULARITIES[child].part_of
            if group is None:
                if child in enabled:
                    out[name] &= _any_kept(out[child], out[name].dim())
                continue
            kept = _any_kept(out[child], out[name].dim())
            if child not in enabled and out[child].numel():
                kept = torch.ones_like(kept)
            parts[group] = parts[group] | kept if group in parts else kept
        for group, kept in parts.items():
            if any(c in enabled for c in children(name) if GRANULARITIES[c].part_of == group):
                out[name] &= kept
    for name, gran in GRANULARITIES.items():
        if gran.parent is None:
            continue
        parent = out[gran.parent]
        shape = out[name].shape
        out[name] &= parent.reshape(parent.shape + (1,) * (len(shape) - parent.dim()))
    return out


def _any_kept(child: Tensor, parent_dims: int) -> Tensor:
    """Per parent node: whether any of its nodes in the child mask is kept."""
    extra = tuple(range(parent_dims, child.dim()))
    return child.any(dim=extra) if extra else child


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
    #: Wall-clock timings (seconds). Kept apart from everything else because they are
    #: the only part of the file that differs between two runs with the same seed.
    timings: dict[str, float] = field(default_factory=dict)

    # -- the masks as the circuit acts ---------------------------------------------
    def effective_masks(self) -> dict[str, Tensor]:
        """Every granularity's mask as the gated forward pass applies it: a node is kept
        only when it and all its ancestors are, so a disabled granularity (all true in
        ``masks`` and on disk) loses the heads of a pruned attention block or layer,
        and a gated parent none of whose children is kept is pruned
        (:func:`make_consistent`). ``masks`` is what was found or loaded; everything
        that reads a circuit (exports, reports, summaries, stability) reads these.
        Fresh tensors on every call."""
        return make_consistent(self.masks, self.enabled)

    # -- summaries ---------------------------------------------------------------
    def kept(self, granularity: str) -> int:
        return int(self.effective_masks()[granularity].sum())

    def total(self, granularity: str) -> int:
        return int(self.masks[granularity].numel())

    def per_layer(self, granularity: str) -> list[int]:
        return _per_layer(self.effective_masks()[granularity], granularity)

    def granularities(self) -> dict[str, dict[str, Any]]:
        effective = self.effective_masks()
        return {
            g: {
                "enabled": g in self.enabled,
                "kept": int(effective[g].sum()),
                "total": self.total(g),
                "per_layer": _per_layer(effective[g], g),
            }
            for g, gran in GRANULARITIES.items()
            if gran.available(self.dims)  # no expert entries in a dense model's file
        }

    def is_empty(self) -> bool:
        """Nothing inside the layers is kept (the embedding alone is no circuit)."""
        inner = [g for g in self.enabled if g != "embedding"] or self.enabled
        effective = self.effective_masks()
        return all(not bool(effective[g].any()) for g in inner)

    def is_full(self) -> bool:
        effective = self.effective_masks()
        return all(bool(effective[g].all()) for g in self.enabled)

    def gate_values(self, like: Tensor | None = None) -> dict[str, Tensor]:
        """Binary gates (1 kept, 0 pruned) as floats, for the gated forward pass."""
        dtype = like.dtype if like is not None else torch.float32
        device = like.device if like is not None else None
        return {g: self.masks[g].to(dtype=dtype, device=device) for g in self.enabled}

    # -- persistence -------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        import transformers

        from .version import __version__

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
            "masks": {
                g: self.masks[g].int().tolist()
                for g in self.enabled
                if GRANULARITIES[g].available(self.dims)
            },
            "versions": {
                "nodeprune": __version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "python": platform.python_version(),
            },
            **({"extra": self.extra} if self.extra else {}),
            **({"timings": self.timings} if self.timings else {}),
        }

    def comparable_json(self) -> dict[str, Any]:
        """The JSON without timings: equal for two runs with the same seed and config."""
        data = self.to_json()
        data.pop("timings", None)
        return data

    def save(self, path: str | Path, root: str | Path | None = None) -> Path:
        """Write the circuit atomically, never through a symbolic link (see fsutil); with
        ``root``, never through a linked folder between ``root`` and ``path`` either."""
        from .fsutil import write_json

        return write_json(path, self.to_json(), root=root)

    @classmethod
    def load(cls, path: str | Path) -> Circuit:
        p = Path(path)
        if not p.is_file():
            raise NodepruneError(f"circuit file {p} does not exist")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as exc:  # ValueError: also 4300+ digit ints
            why = " ".join(str(exc).split())[:200]
            raise NodepruneError(f"{p}: not a circuit JSON file ({why})") from exc
        except OSError as exc:
            raise NodepruneError(f"cannot read circuit file {p}: {exc.strerror}") from exc
        return cls.from_json(data, source=str(p))

    @classmethod
    def from_json(cls, data: Any, source: str = "circuit") -> Circuit:
        """Build a circuit from parsed JSON, checking every field: any malformed input
        gives a one-line NodepruneError."""
        if not isinstance(data, dict):
            raise NodepruneError(f"{source}: expected a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise NodepruneError(
                f"{source}: format_version {version!r} is not supported (this nodeprune "
                f"reads version {FORMAT_VERSION})"
            )
        try:
            return _from_checked_json(cls, data, source)
        except NodepruneError:
            raise
        except (ValueError, TypeError, RuntimeError, OverflowError, RecursionError) as exc:
            why = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            raise NodepruneError(f"{source}: malformed circuit file ({why})") from exc

    def check_matches(self, dims: ModelDims, model_name: str, check_name: bool = True) -> None:
        """The circuit must be applied to the model it was found on: same shapes, and
        (unless ``check_name`` is False, for a copy under another name) the same name."""
        if dims != self.dims:
            raise NodepruneError(
                f"circuit was found on {self.model} with {self.dims.to_dict()}, but the model "
                f"{model_name} has {dims.to_dict()}; load the model the circuit was found on"
            )
        if check_name and not same_model(self.model, model_name):
            raise NodepruneError(
                f"circuit was found on {self.model!r} but is applied to {model_name!r} (same "
                f"shapes); load {self.model!r}, or, if it is the same model under another "
                "name, pass check_name=False (or set circuit.model)"
            )


def _per_layer(mask: Tensor, granularity: str) -> list[int]:
    if not GRANULARITIES[granularity].per_layer:
        return [int(mask.sum())]
    return [int(x) for x in mask.reshape(mask.shape[0], -1).sum(1)]


def same_model(a: str, b: str) -> bool:
    """Equal names, or two spellings of the same local folder or file."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


#: No real model comes near this many nodes; a file claiming more is malformed (and
#: would otherwise make the loader allocate gigabytes).
MAX_NODES = 1 << 27


def _need(data: dict[str, Any], key: str, kind: type | tuple[type, ...], source: str) -> Any:
    if key not in data:
        raise NodepruneError(f"{source}: malformed circuit file (missing {key!r})")
    return _typed(data[key], key, kind, source)


def _typed(value: Any, key: str, kind: type | tuple[type, ...], source: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise NodepruneError(
            f"{source}: malformed circuit file ({key} must be {names}, not {type(value).__name__})"
        )
    return value


def _dims(raw: Any, source: str) -> ModelDims:
    raw = _typed(raw, "model_dims", dict, source)
    names = [f.name for f in fields(ModelDims)]
    # A dense model's file has no expert sizes (as before they existed): they read as 0.
    given = {**dict.fromkeys(_EXPERT_DIMS, 0), **raw}
    if set(given) != set(names) or (set(_EXPERT_DIMS) & set(raw)) not in (set(), set(_EXPERT_DIMS)):
        raise NodepruneError(
            f"{source}: malformed circuit file (model_dims must have exactly the keys "
            f"{', '.join(n for n in names if n not in _EXPERT_DIMS)}, and "
            f"{' and '.join(_EXPERT_DIMS)} for a mixture of experts)"
        )
    values = {k: _typed(given[k], f"model_dims.{k}", int, source) for k in names}
    moe = values["n_experts"] > 0
    # A mixture of experts may lack a dense hidden layer (d_mlp 0: only routed experts).
    may_be_zero = {"d_mlp"} if moe else set(_EXPERT_DIMS)
    if any(v < 0 or (v == 0 and k not in may_be_zero) for k, v in values.items()):
        raise NodepruneError(f"{source}: malformed circuit file (model_dims must be > 0)")
    dims = ModelDims(**values)
    if sum(g.size(dims) for g in GRANULARITIES.values()) > MAX_NODES:
        raise NodepruneError(f"{source}: malformed circuit file (model_dims are implausibly large)")
    return dims


_EXPERT_DIMS = ("n_experts", "d_expert")


def _mask(value: Any, name: str, expected: tuple[int, ...], source: str) -> Tensor:
    if not isinstance(value, list):
        raise NodepruneError(f"{source}: mask {name} must be a nested list of 0/1")
    m = torch.tensor(value)
    if m.numel() == 0:  # a granularity the model has no nodes of
        m = m.long()
    if m.dtype not in (torch.bool, torch.int64) or not bool(((m == 0) | (m == 1)).all()):
        raise NodepruneError(f"{source}: mask {name} must hold only 0 and 1")
    if tuple(m.shape) != expected:
        raise NodepruneError(
            f"{source}: mask {name} has shape {tuple(m.shape)}, expected {expected}"
        )
    return m.bool()


def _from_checked_json(cls: type[Circuit], data: dict[str, Any], source: str) -> Circuit:
    dims = _dims(_need(data, "model_dims", dict, source), source)
    raw_masks = _need(data, "masks", dict, source)
    for g in raw_masks:
        if g not in GRANULARITIES:
            raise NodepruneError(
                f"{source}: unknown granularity {g!r} in masks{closest(g, GRANULARITIES)}"
            )
    enabled = [g for g in GRANULARITIES if g in raw_masks]
    if not enabled:
        raise NodepruneError(f"{source}: the circuit file has no masks")
    masks = full_masks(dims)
    for g in enabled:
        masks[g] = _mask(raw_masks[g], g, GRANULARITIES[g].shape(dims), source)
    metrics = _typed(data.get("metrics", {}), "metrics", dict, source)
    for key, value in metrics.items():
        _typed(value, f"metrics.{key}", (int, float, type(None)), source)
    timings = dict(_typed(data.get("timings", {}), "timings", dict, source))
    extra = dict(_typed(data.get("extra", {}), "extra", dict, source))
    if "train_seconds" in extra:  # files written before timings had their own field
        timings.setdefault("train_seconds", extra.pop("train_seconds"))
    for key, value in timings.items():
        _typed(value, f"timings.{key}", (int, float), source)
    return cls(
        model=_need(data, "model", str, source),
        task=_need(data, "task", str, source),
        ablation=_need(data, "ablation", str, source),
        seed=_need(data, "seed", int, source),
        dims=dims,
        masks=masks,
        enabled=enabled,
        config=dict(_typed(data.get("config", {}), "config", dict, source)),
        metrics=dict(metrics),
        model_revision=_typed(
            data.get("model_revision"), "model_revision", (str, type(None)), source
        ),
        extra=extra,
        timings=timings,
    )
