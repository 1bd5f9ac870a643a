"""The set-up of a run: one model, task, prompt set and ablation, made ready once.

A :class:`Workbench` owns the hooked model (:class:`~nodeprune.intervention.GatedModel`),
the task's train/validation/test splits (filtered by the full model), the fitted
:class:`~nodeprune.ablator.Ablator` and the full model's reference outputs on the train
prompts. Discovery, evaluation, every baseline of ``nodeprune compare``, sweeps and the
benchmarks consume one instead of building these themselves, so that the methods of a
comparison share one set of hooks and one fitted ablator.

It is a context manager: leaving the block (or :meth:`close`) takes its hooks off the
model, which is then as it was (sweeps reuse a model trial after trial). A set-up that
fails half-way takes them off too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .ablator import Ablator
from .architectures.base import ModelDims
from .closing import ClosedOnExit
from .errors import NodepruneError
from .evaluation import SplitReference, evaluate_gates
from .intervention import GatedModel
from .large_models import GATED_ATTR, attach_gated
from .models import LoadedModel
from .splits import SplitPlan, TaskData
from .tasks import Task, resolve_task

if TYPE_CHECKING:
    from .config import DiscoveryConfig


class Workbench(ClosedOnExit):
    """The hooked model, the task's splits, the fitted ablator and the reference outputs
    of one (model, task, prompts, ablation).

    ``granularities`` (default: all) are those the hooks may gate; a Discovery on this
    workbench may gate any subset of them. ``splits``: which prompts (splits.SplitPlan);
    ``data`` replaces building them.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        task: Task,
        ablation: str,
        splits: SplitPlan,
        granularities: Iterable[str] | None = None,
        data: TaskData | None = None,
    ) -> None:
        self.loaded = loaded
        self.task = task
        self.batch_size = batch_size = splits.batch_size
        self.gated = GatedModel(loaded, granularities)
        self._closed = False
        try:
            self.data = data or splits.build(self.gated, task)
            self.ablator = Ablator(ablation, self.gated).fit(self.data.train, batch_size)
        except BaseException:
            # A model reused after a failed set-up (sweeps do) must not keep our hooks.
            self.gated.remove()
            raise
        # Gradient checkpointing replays the gate state of these hooks (large_models.py).
        attach_gated(loaded.model, self.gated)
        self._train_logprobs: Tensor | None = None
        self._references: dict[tuple[str, tuple[str, ...], bool], SplitReference] = {}

    @classmethod
    def for_config(
        cls,
        loaded: LoadedModel,
        config: DiscoveryConfig,
        task: Task | None = None,
        granularities: Iterable[str] | None = None,
        sizes: dict[str, int] | None = None,
        data_seed: int | None = None,
        data: TaskData | None = None,
    ) -> Workbench:
        """The workbench a (validated) config asks for: its task, ablation, split sizes,
        prompt seed, filtering and batch size (any of them replaceable)."""
        sizes = sizes or {
            "train": config.n_train,
            "validation": config.n_val,
            "test": config.n_test,
        }
        splits = SplitPlan(
            sizes,
            config.data_seed if data_seed is None else data_seed,
            config.filter,
            config.eval_batch_size,
        )
        task = task or resolve_task(config.task, config.task_file)
        return cls(loaded, task, config.ablation, splits, granularities, data)

    # -- what it offers ---------------------------------------------------------------
    @property
    def dims(self) -> ModelDims:
        return self.loaded.dims

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    @property
    def like(self) -> Tensor:
        """A model parameter: the dtype and device gates are made in."""
        return next(self.loaded.model.parameters())

    @property
    def train_logprobs(self) -> Tensor:
        """The full model's next-token log-probs on the train prompts (computed once)."""
        if self._train_logprobs is None:
            self._train_logprobs = self._reference_logprobs()
        return self._train_logprobs

    @torch.no_grad()
    def _reference_logprobs(self) -> Tensor:
        logits = self.data.full_logits.get("train")
        if logits is not None:  # computed by the filter
            return torch.log_softmax(logits.to(self.device), -1)
        parts = []
        for part in self.data.train.batches(self.batch_size):
            part = part.to(self.device)
            logits = self.gated.plain_logits(part.clean_ids, part.attention_mask, part.answer_pos)
            parts.append(torch.log_softmax(logits, -1))
        return torch.cat(parts)

    def reference(
        self, split: str, granularities: Iterable[str], every_site: bool = False
    ) -> SplitReference:
        """The kept evaluation reference of ``split`` ("validation" or "test") with the
        gates of ``granularities`` (one per pair, shared by every method and run on this
        workbench): what scoring a circuit there needs that no circuit changes.
        ``every_site``: ablated values of every hooked site, not only those the
        granularities gate (the edge phase reads every upstream node's)."""
        enabled = tuple(granularities)
        key = (split, tuple(sorted(enabled)), every_site)
        if key not in self._references:
            data = getattr(self.data, split)
            if data is None:
                raise NodepruneError(f"this workbench has no {split} prompts")
            self._references[key] = SplitReference(
                self.gated,
                self.ablator if every_site else self.ablator_for(enabled),
                self.task,
                data,
                list(enabled),
                self.batch_size,
                full_logits=self.data.full_logits.get(split),
            )
        return self._references[key]

    def evaluate(self, gates: dict[str, Tensor], split: str = "test") -> dict[str, float]:
        """A circuit's metrics on a split (default: test), through the split's kept
        reference (:meth:`reference`)."""
        return self.reference(split, list(gates)).evaluate(gates)

    def ablator_for(self, granularities: Iterable[str]) -> Ablator:
        """The fitted ablator, recording only the sites that ``granularities`` gate."""
        wanted = list(granularities)
        unknown = [g for g in wanted if g not in self.gated.granularities]
        if unknown:
            raise NodepruneError(
                f"this workbench's hooks gate {', '.join(self.gated.granularities)}, not "
                f"{', '.join(unknown)}; build it with those granularities"
            )
        return self.ablator.restricted(wanted)

    def check_matches(self, config: DiscoveryConfig) -> None:
        """A run sharing this workbench must ask for its ablation and gate a subset of
        its granularities (its prompts, seed and sizes are the workbench's)."""
        if config.ablation != self.ablator.kind.name:
            raise NodepruneError(
                f"the config asks for {config.ablation} ablation, but this workbench is "
                f"fitted for {self.ablator.kind.name}"
            )
        self.ablator_for(config.granularities)

    # -- lifetime ---------------------------------------------------------------------
    def close(self) -> None:
        """Take the hooks off the model (again: nothing)."""
        if self._closed:
            return
        self._closed = True
        self._references.clear()  # their recorded values are the hooked model's
        if getattr(self.loaded.model, GATED_ATTR, None) is self.gated:
            attach_gated(self.loaded.model, None)
        self.gated.remove()


def evaluate_circuit(
    loaded,
    circuit,
    seed: int | None = None,
    n_test: int | None = None,
    task: Task | None = None,
    check_name: bool = True,
) -> dict[str, float]:
    """Recompute a saved circuit's metrics: by default on the same held-out test
    prompts as at discovery (same seed and sizes); with ``seed``, on fresh ones.
    ``check_name=False`` accepts the same model under another name or path."""
    from .config import DiscoveryConfig, config_with

    circuit.check_matches(loaded.dims, loaded.name, check_name=check_name)
    saved = DiscoveryConfig.from_saved(circuit.config, source="circuit config").validate()
    cfg = config_with(saved, {"ablation": circuit.ablation})
    task = task or resolve_task(circuit.task, cfg.task_file)
    sizes = {"train": cfg.n_train, "test": n_test or cfg.n_test}  # no validation prompts
    with Workbench.for_config(
        loaded, cfg, task, granularities=circuit.enabled, sizes=sizes, data_seed=seed
    ) as bench:
        # One evaluation: nothing is kept for another.
        gates = circuit.gate_values(bench.like)
        return evaluate_gates(
            bench.gated, bench.ablator, bench.task, bench.data.test, gates, bench.batch_size
        )
