"""The edge phase's training loop: hard-concrete gates on the candidate edges of a node
circuit, trained with node discovery's objective (KL to the full model + lam times the
size-normalised expected L0 of the edge gates), its target modes (targets.py), NaN checks
(health.py) and checkpoint files (checkpoint.py).

Only the node circuit's surviving nodes have edges (EdgeGraph), so the per-node state of
the pass is one residual-stream difference per surviving node.
"""

from __future__ import annotations

import hashlib
import json
import math
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..checkpoint import (
    CHECKPOINT_FORMAT,
    DAMAGED_ERRORS,
    RunInterrupted,
    StopOnSignal,
    check_compatible,
    damaged,
    read_checkpoint,
    save_state,
)
from ..circuit import Circuit
from ..closing import ClosedOnExit
from ..errors import NodepruneError
from ..gates import expected_l0, sample_gate
from ..health import NumericalError, check_step
from ..loop_state import BatchOrder, gate_update, loop_state, restore_loop_state
from ..objective import kl_full_to_circuit, sparsity_weight, total_loss
from ..prompts import PromptBatch
from ..targets import (
    Selection,
    SparsityController,
    Target,
    select_threshold,
)
from ..version import __version__
from ..workbench import Workbench
from .circuit import EdgeCircuit
from .config import EdgeConfig
from .forward import EdgeModel
from .graph import EdgeGraph
from .layout import edge_layout


@dataclass
class EdgeStepLog:
    step: int
    loss: float
    kl: float
    sparsity: float
    lam: float
    kept: float
    target_weight: float = 1.0
    validation: float | None = None


class EdgeProbe:
    """The validation measurements of edge circuits (``{"edges": mask}``) on the node
    circuit's nodes, for the target controller and the threshold search."""

    def __init__(self, edges: EdgeModel, node_gates: dict[str, Tensor], bench: Workbench):
        assert bench.data.validation is not None
        self.reference = bench.reference("validation", node_gates, every_site=True).prepare()
        self.edges, self.node_gates = edges, node_gates

    def score(self, masks: dict[str, Tensor]) -> dict[str, float]:
        like = self.reference.like
        gates = self.edges.graph.split(masks["edges"].to(like.dtype).to(like.device))

        def logits(part: PromptBatch, ablated) -> Tensor:
            args = (part.clean_ids, part.attention_mask, part.answer_pos)
            return self.edges.edge_logits(*args, self.node_gates, gates, ablated)

        metrics = self.reference.evaluate(circuit_logits=logits)
        return {"faithfulness": metrics["normalized_faithfulness"], "kl": metrics["kl"]}

    def pruning_harm(self, masks: dict[str, Tensor], kind: str) -> dict[str, Tensor]:
        """Per candidate edge, the first-order estimate of how much closing it, from the
        edge circuit ``masks``, worsens the target's quantity (SplitReference.pruning_harm
        through the edge-gated pass): the threshold search's order among tied edges."""

        def logits_of(gates: dict[str, Tensor]):
            split = self.edges.graph.split(gates["edges"])

            def logits(part: PromptBatch, ablated) -> Tensor:
                args = (part.clean_ids, part.attention_mask, part.answer_pos)
                return self.edges.edge_logits(*args, self.node_gates, split, ablated)

            return logits

        return self.reference.pruning_harm(masks, kind, circuit_logits_of=logits_of)


def measure_edges(target: Target, masks: dict[str, Tensor], probe: object) -> float:
    """The target's quantity for an edge circuit: size is the fraction of candidate
    edges kept."""
    if target.kind == "size":
        return float(masks["edges"].float().mean())
    assert isinstance(probe, EdgeProbe)
    return probe.score(masks)[target.kind]


def node_identity(node: Circuit) -> str:
    """A digest of the node circuit's masks, so a checkpoint resumes only on its own."""
    masks = {g: m.int().flatten().tolist() for g, m in sorted(node.masks.items())}
    return hashlib.sha256(json.dumps(masks).encode()).hexdigest()[:16]


class EdgeDiscovery(ClosedOnExit):
    """One edge-phase run on a workbench (built with every granularity, so that its
    ablator records the embedding's, the heads' and the MLP blocks' ablated outputs) for
    a node circuit found on the same prompts."""

    #: The step record gate_update writes (loop_state.py).
    LOG = EdgeStepLog

    def __init__(self, bench: Workbench, node: Circuit, config: EdgeConfig) -> None:
        self.config = config.validate()
        self.bench, self.node = bench, node
        node.check_matches(bench.dims, bench.loaded.name, check_name=False)
        if node.ablation != bench.ablator.kind.name:
            raise NodepruneError(
                f"the node circuit used {node.ablation} ablation, this workbench "
                f"{bench.ablator.kind.name}; build the workbench from the circuit's config"
            )
        parallel = edge_layout(bench.gated.model).parallel
        self.graph = EdgeGraph(bench.dims, node.effective_masks(), parallel=parallel)
        if self.graph.n_edges == 0:
            raise NodepruneError("the node circuit keeps no node with edges; nothing to prune")
        self.edges = EdgeModel(bench.gated, self.graph)
        try:
            self._set_up()
        except BaseException:
            self.edges.remove()
            raise

    def _set_up(self) -> None:
        cfg, like = self.config, self.bench.like
        self.node_gates = self.node.gate_values(like)
        init = torch.Generator().manual_seed(cfg.seed)
        values = cfg.init_log_alpha + cfg.init_spread * (
            2 * torch.rand(self.graph.n_edges, generator=init) - 1
        )
        self.log_alpha = nn.Parameter(values.to(device=like.device, dtype=torch.float32))
        self.optimizer = torch.optim.AdamW([self.log_alpha], lr=cfg.lr, weight_decay=0.0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)),
        )
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.batches = BatchOrder(len(self.bench.data.train), cfg.batch_size, self.generator)
        self.history: list[EdgeStepLog] = []
        self.train_seconds = 0.0
        self.target = cfg.target()
        self.controller: SparsityController | None = None
        if self.target is not None:
            self.controller = SparsityController(self.target, cfg.target_rate, cfg.target_every)
        self.probe: EdgeProbe | None = None
        self.selection: Selection | None = None
        if self.target is not None and self.target.kind != "size":
            if self.bench.data.validation is None:
                raise NodepruneError(
                    f"target_{self.target.kind} is measured on validation prompts, but the "
                    "node circuit's run had none; rerun node discovery with --n-val above 0"
                )
            self.probe = EdgeProbe(self.edges, self.node_gates, self.bench)

    def close(self) -> None:
        self.edges.remove()

    # -- training ---------------------------------------------------------------------
    def edge_logits(self, batch: PromptBatch, gates: Tensor, ablated) -> Tensor:
        split = self.graph.split(gates.to(self.bench.like.dtype))
        return self.edges.edge_logits(
            batch.clean_ids, batch.attention_mask, batch.answer_pos, self.node_gates, split, ablated
        )

    def train_step(self) -> EdgeStepLog:
        cfg = self.config
        idx = self.batches.next()
        batch = self.bench.data.train.select(idx).to(self.bench.device)
        ablated = self.bench.ablator.values(batch)
        logits = self.edge_logits(batch, sample_gate(self.log_alpha, self.generator), ablated)
        full = self.bench.train_logprobs[idx.to(logits.device)]
        kl = kl_full_to_circuit(full, logits).mean()
        sparsity = expected_l0(self.log_alpha).mean()
        lam_now = sparsity_weight(self.step, cfg.steps, cfg.lam, cfg.sparsity_warmup)
        weight = self.controller.weight if self.controller is not None else 1.0
        loss = total_loss(kl, sparsity, cfg.lam, lam_now * weight)
        number, dtype = self.step + 1, str(self.bench.like.dtype).removeprefix("torch.")
        check_step(number, dtype, cfg.lr, "kl", kl, "KL to the full model")
        terms = (loss, kl, sparsity, lam_now, weight)
        return gate_update(self, self.log_alpha, dtype, "edge gate", terms)

    @torch.no_grad()
    def kept_fractions(self) -> float:
        """The fraction of candidate edges whose gate is open (log-alpha > 0)."""
        return float((self.log_alpha > 0).float().mean())

    def _measure_target(self) -> float:
        """The target's quantity for the binarised circuit at the current gates."""
        assert self.target is not None
        return measure_edges(self.target, self.masks_at(0.0), self.probe)

    def run(
        self, progress: bool = True, checkpoint_dir: str | Path | None = None, every: int = 0
    ) -> EdgeCircuit:
        """Train up to ``config.steps`` (a restored run continues), checkpointing every
        ``every`` steps, after the last and on SIGINT/SIGTERM; return the edge circuit."""
        bar = tqdm(total=self.config.steps, initial=self.step, desc="edges", disable=not progress)
        with StopOnSignal(enabled=checkpoint_dir is not None) as stop:
            while self.step < self.config.steps:
                started = time.perf_counter()
                try:
                    log = self.train_step()
                except NumericalError:
                    bar.close()
                    raise
                self.train_seconds += time.perf_counter() - started
                bar.update(1)
                bar.set_postfix_str(f"loss {log.loss:.3f} kl {log.kl:.3f} edges {log.kept:.2f}")
                due = every > 0 and self.step % every == 0
                last = self.step == self.config.steps
                if checkpoint_dir is not None and (due or last or stop.received is not None):
                    self.save_checkpoint(checkpoint_dir)
                if stop.received is not None:
                    bar.close()
                    raise RunInterrupted(
                        f"interrupted by {signal.Signals(stop.received).name} after edge step "
                        f"{self.step} of {self.config.steps}; checkpoint written to "
                        f"{checkpoint_dir}",
                        stop.received,
                        self.step,
                    )
        bar.close()
        return self.circuit()

    # -- the result ---------------------------------------------------------------------
    def masks_at(self, threshold: float) -> dict[str, Tensor]:
        return {"edges": (self.log_alpha.detach() > threshold).cpu()}

    def final_mask(self) -> Tensor:
        if self.target is None:
            return self.masks_at(0.0)["edges"]
        if self.selection is None:
            probe, kind = self.probe, self.target.kind
            tiebreak = None
            if probe is not None and kind != "size":

                def tiebreak() -> dict[str, Tensor]:
                    # Edges training drove to the same clamp tie in log-alpha: ordered
                    # by their estimated harm, as node gates are.
                    return probe.pruning_harm(self.masks_at(0.0), kind)

            self.selection = select_threshold(
                self.target,
                {"edges": self.log_alpha},
                lambda kept: kept,
                probe,
                measure_with=measure_edges,
                tiebreak=tiebreak,
            )
        return self.selection.kept["edges"]

    def evaluate(self, kept: Tensor, split: str = "test") -> dict[str, float]:
        """Metrics of the edge circuit ``kept`` on a split, against the same full and
        fully-ablated models as the node circuit's metrics."""
        bench = self.bench
        gates = kept.to(device=bench.like.device, dtype=bench.like.dtype)

        def logits(part: PromptBatch, ablated) -> Tensor:
            return self.edge_logits(part, gates, ablated)

        # Kept by the workbench: the edge curve scores one circuit per MIB size on test.
        reference = bench.reference(split, self.node_gates, every_site=True)
        return reference.evaluate(circuit_logits=logits)

    def circuit(self) -> EdgeCircuit:
        kept = self.final_mask()
        result = EdgeCircuit(
            self.node,
            kept,
            self.log_alpha.detach().cpu().float(),
            config=self.config.to_dict(),
            parallel=self.graph.parallel,
        )
        result.metrics = self.evaluate(kept)
        result.extra = {
            "node_circuit": node_identity(self.node),
            "history": [asdict(h) for h in self.history[:: max(1, len(self.history) // 100)]],
        }
        if self.target is not None:
            assert self.selection is not None and self.controller is not None
            result.extra["target"] = {
                "kind": self.target.kind,
                "value": self.target.value,
                "final_sparsity_weight": self.controller.weight,
                **self.selection.to_json(),
            }
        result.timings = {"train_seconds": round(self.train_seconds, 2)}
        return result

    # -- checkpoints ---------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        return {
            "name": self.bench.loaded.name,
            "dims": self.bench.dims.to_dict(),
            "node_circuit": node_identity(self.node),
        }

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors, meta = loop_state(self)
        tensors["edges.log_alpha"] = self.log_alpha.detach()
        meta.update(
            {
                "format_version": CHECKPOINT_FORMAT,
                "nodeprune_version": __version__,
                "phase": "edges",
                "config": self.config.to_dict(),
                "model": self.identity(),
            }
        )
        return tensors, meta

    def save_checkpoint(self, folder: str | Path) -> Path:
        tensors, meta = self.state()
        return save_state(folder, tensors, meta, self.step)

    def load_checkpoint(self, folder: str | Path) -> None:
        folder = Path(folder)
        tensors, meta = read_checkpoint(folder)
        check_compatible(self.config.to_dict(), self.identity(), self.bench.task, meta, folder)
        try:
            log_alpha = tensors["edges.log_alpha"]
            if log_alpha.shape != self.log_alpha.shape or not torch.isfinite(log_alpha).all():
                raise ValueError("edge gate logits do not fit the candidate edges")
            restore_loop_state(self, tensors, meta, EdgeStepLog)
            with torch.no_grad():
                self.log_alpha.copy_(log_alpha.to(self.log_alpha.device))
        except DAMAGED_ERRORS as exc:
            raise damaged(folder, f"{type(exc).__name__}: {exc}") from exc
        if self.controller is not None:
            self.controller = self.controller.replayed(self.history)


def edge_workbench(loaded, node: Circuit) -> Workbench:
    """The workbench of a node circuit's run (its task, ablation, prompts, seed and
    sizes) with every granularity hooked, for the edge phase."""
    from ..config import DiscoveryConfig, config_with
    from ..tasks import resolve_task

    saved = DiscoveryConfig.from_saved(node.config, source="circuit config").validate()
    cfg = config_with(saved, {"ablation": node.ablation})
    task = resolve_task(node.task, cfg.task_file)
    return Workbench.for_config(loaded, cfg, task, granularities=None)
