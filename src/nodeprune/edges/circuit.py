"""The edge circuit: the node circuit it refines, and which of its candidate edges are kept.

The file holds the node circuit whole (so it is self-contained: the candidate edges are
a function of its kept nodes and of ``parallel_attn_mlp``, whether the model's blocks are
parallel) and one entry per candidate edge, in EdgeGraph order, with
its final log-alpha as its score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..circuit import Circuit
from ..errors import NodepruneError
from .graph import EdgeGraph

EDGE_FORMAT = "nodeprune-edge-circuit"
EDGE_FORMAT_VERSION = 1


def is_edge_circuit_file(path: str | Path) -> bool:
    """Whether ``path`` is an edge circuit file (a node circuit, or anything else: no)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("format") == EDGE_FORMAT


def refines(edges: EdgeCircuit, circuit: Circuit) -> bool:
    """Whether ``edges`` is an edge circuit of ``circuit`` (the same effective masks)."""
    a, b = edges.node.effective_masks(), circuit.effective_masks()
    return (
        edges.node.dims == circuit.dims
        and a.keys() == b.keys()
        and all(torch.equal(a[g], b[g]) for g in a)
    )


def edge_circuit_for(circuit: Circuit, folder: str | Path) -> tuple[EdgeCircuit | None, str]:
    """The edge circuit ``nodeprune edges`` wrote for ``circuit`` in its run ``folder``,
    if there is one for this circuit; with why not otherwise."""
    from ..run_files import EDGE_CIRCUIT_FILE, EDGES_DIR

    path = Path(folder) / EDGES_DIR / EDGE_CIRCUIT_FILE
    if not path.is_file():
        return None, "none (no edges/edge_circuit.json in the run folder)"
    edges = EdgeCircuit.load(path)
    if not refines(edges, circuit):
        return None, f"not used: {path} refines another node circuit (rerun nodeprune edges)"
    return edges, f"the edge circuit in {path}"


@dataclass
class EdgeCircuit:
    node: Circuit
    kept: Tensor  # bool [n_edges], EdgeGraph order
    log_alpha: Tensor  # float [n_edges]
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: The model's blocks are parallel (an MLP reads its layer's input, not its heads).
    parallel: bool = False

    def graph(self) -> EdgeGraph:
        return EdgeGraph(self.node.dims, self.node.effective_masks(), parallel=self.parallel)

    @classmethod
    def implied(cls, node: Circuit, parallel: bool = False) -> EdgeCircuit:
        """Every candidate edge kept: the edges the node circuit implies."""
        n = EdgeGraph(node.dims, node.effective_masks(), parallel=parallel).n_edges
        return cls(node, torch.ones(n, dtype=torch.bool), torch.zeros(n), parallel=parallel)

    @property
    def n_kept(self) -> int:
        return int(self.kept.sum())

    def edge_gates(self, like: Tensor | None = None) -> dict[str, Tensor]:
        """Binary edge gates per downstream group, for ``EdgeModel.edge_logits``."""
        dtype = like.dtype if like is not None else torch.float32
        device = like.device if like is not None else None
        return self.graph().split(self.kept.to(dtype=dtype, device=device))

    def kept_edges(self) -> dict[tuple[str, str], float]:
        """(parent, child) -> score of each kept edge (EdgeGraph's names)."""
        names = self.graph().edge_names()
        return {
            name: float(la)
            for name, keep, la in zip(
                names, self.kept.tolist(), self.log_alpha.tolist(), strict=True
            )
            if keep
        }

    def to_json(self) -> dict[str, Any]:
        names = self.graph().edge_names()
        return {
            "format": EDGE_FORMAT,
            "format_version": EDGE_FORMAT_VERSION,
            "n_candidate_edges": len(names),
            "n_kept_edges": self.n_kept,
            "parallel_attn_mlp": self.parallel,
            "config": self.config,
            "metrics": self.metrics,
            "edges": [
                {"parent": p, "child": c, "kept": bool(k), "log_alpha": float(la)}
                for (p, c), k, la in zip(
                    names, self.kept.tolist(), self.log_alpha.tolist(), strict=True
                )
            ],
            "node_circuit": self.node.to_json(),
            "extra": self.extra,
            "timings": self.timings,
        }

    def save(self, path: str | Path, root: str | Path | None = None) -> Path:
        from ..fsutil import write_json

        return write_json(path, self.to_json(), root=root)

    @classmethod
    def load(cls, path: str | Path) -> EdgeCircuit:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NodepruneError(f"edge circuit file {p} does not exist") from None
        except (ValueError, OSError) as exc:
            raise NodepruneError(f"{p}: not an edge circuit JSON file ({exc})") from exc
        return cls.from_json(data, source=str(p))

    @classmethod
    def from_json(cls, data: Any, source: str = "edge circuit") -> EdgeCircuit:
        if not isinstance(data, dict) or data.get("format") != EDGE_FORMAT:
            raise NodepruneError(
                f'{source}: not an edge circuit file (no "format": "{EDGE_FORMAT}"); '
                "node circuits are read by the other commands"
            )
        if data.get("format_version") != EDGE_FORMAT_VERSION:
            raise NodepruneError(
                f"{source}: format_version {data.get('format_version')!r} is not supported "
                f"(this nodeprune reads version {EDGE_FORMAT_VERSION})"
            )
        node = Circuit.from_json(data.get("node_circuit"), source=f"{source} node circuit")
        parallel = data.get("parallel_attn_mlp", False)  # absent: written before parallel blocks
        if not isinstance(parallel, bool):
            raise NodepruneError(f"{source}: parallel_attn_mlp must be true or false")
        names = EdgeGraph(node.dims, node.effective_masks(), parallel=parallel).edge_names()
        edges = data.get("edges")
        if not isinstance(edges, list) or len(edges) != len(names):
            raise NodepruneError(
                f"{source}: expected {len(names)} edges (the candidates of its node circuit), "
                f"got {len(edges) if isinstance(edges, list) else type(edges).__name__}"
            )
        kept, scores = [], []
        for i, (entry, (parent, child)) in enumerate(zip(edges, names, strict=True)):
            if not isinstance(entry, dict) or (entry.get("parent"), entry.get("child")) != (
                parent,
                child,
            ):
                raise NodepruneError(f"{source}: edge {i} is not {parent}->{child}")
            if not isinstance(entry.get("kept"), bool) or not isinstance(
                entry.get("log_alpha"), int | float
            ):
                raise NodepruneError(f"{source}: edge {i} needs a boolean kept and a log_alpha")
            kept.append(entry["kept"])
            scores.append(float(entry["log_alpha"]))
        return cls(
            node,
            torch.tensor(kept, dtype=torch.bool),
            torch.tensor(scores, dtype=torch.float32),
            config=dict(data.get("config") or {}),
            metrics=dict(data.get("metrics") or {}),
            extra=dict(data.get("extra") or {}),
            timings=dict(data.get("timings") or {}),
            parallel=parallel,
        )
