"""Metrics of a binary circuit on held-out prompts."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from .ablator import Ablator
from .faithfulness_estimate import FaithfulnessEstimate, estimate_faithfulness
from .intervention import Ablated, GatedModel
from .objective import kl_full_to_circuit
from .prompts import PromptBatch
from .tasks.base import Task

METRIC_KEYS = (
    "kl",
    "logit_diff",
    "logit_diff_full",
    "logit_diff_ablated",
    "normalized_faithfulness",
    "normalized_faithfulness_low",
    "normalized_faithfulness_high",
    "faithfulness_defined",
    "accuracy",
    "exact_match",
    "n",
)


#: Most memory one split's reference keeps its recorded ablated values in (SmolLM2, 128
#: IOI prompts, the default granularities: about 0.4 GB); beyond it they are recorded
#: again for every circuit scored.
CACHE_BYTES = 2 * 1024**3

#: How sure a part of the validation prompts must be of a circuit's side of its target
#: before the threshold search stops reading the rest (a two-sided bootstrap interval).
DECISION_LEVEL = 0.99

#: ``circuit_logits(batch, ablated)``: a circuit's logits at the answer positions.
CircuitLogits = Callable[[PromptBatch, Ablated], Tensor]


@dataclass
class _BatchReference:
    """What one batch's evaluation needs that no circuit changes."""

    full_logprobs: Tensor
    full_metric: Tensor
    full_top1: Tensor
    ablated_metric: Tensor
    #: The batch's ablated values, or None when the split's cache is full.
    ablated: Ablated | None


class _MetricSums:
    """The per-prompt metrics of one circuit over a split, summed batch by batch."""

    def __init__(self) -> None:
        self.kl = self.correct = self.top1 = 0.0
        self.ld: list[Tensor] = []
        self.ld_full: list[Tensor] = []
        self.ld_ablated: list[Tensor] = []

    def add(self, task: Task, part: PromptBatch, ref: _BatchReference, logits: Tensor) -> None:
        self.kl += float(kl_full_to_circuit(ref.full_logprobs, logits).sum())
        self.ld.append(task.metric(logits, part).float().cpu())
        self.ld_full.append(ref.full_metric)
        self.ld_ablated.append(ref.ablated_metric)
        self.correct += float(task.correct(logits, part).float().sum())
        self.top1 += float((logits.argmax(-1) == ref.full_top1).float().sum())

    def faithfulness(self, level: float) -> FaithfulnessEstimate:
        ld, ld_full, ld_ablated = (torch.cat(v) for v in (self.ld, self.ld_full, self.ld_ablated))
        return estimate_faithfulness(ld, ld_full, ld_ablated, level)

    def metrics(self) -> dict[str, float]:
        ld, ld_full, ld_ablated = (torch.cat(v) for v in (self.ld, self.ld_full, self.ld_ablated))
        n = int(ld.numel())
        estimate = estimate_faithfulness(ld, ld_full, ld_ablated)
        return {
            "kl": self.kl / n,
            "logit_diff": float(ld.double().mean()),
            "logit_diff_full": float(ld_full.double().mean()),
            "logit_diff_ablated": float(ld_ablated.double().mean()),
            **estimate.metrics(),
            "accuracy": self.correct / n,
            "exact_match": self.top1 / n,
            "n": n,
        }


class SplitReference:
    """The evaluation of circuits on one split, less everything no circuit changes.

    The full model's log-probs, metric and top-1 token, the ablated values and the fully
    ablated model's metric (every gate of ``enabled`` closed) are computed on the first
    evaluation, batch by batch (the full model's logits taken from ``full_logits`` when
    given: the filter's), and kept: every later circuit costs one gated pass per
    batch instead of four (full, corrupted, circuit, fully ablated). ``compare`` scores
    dozens of baseline circuits on one test split, the target's threshold search a dozen
    on validation. The ablated values are kept up to ``cache_bytes`` (0: none kept, for
    a single evaluation that should hold no memory afterwards).
    """

    def __init__(
        self,
        gated: GatedModel,
        ablator: Ablator,
        task: Task,
        data: PromptBatch,
        enabled: list[str],
        batch_size: int,
        cache_bytes: int = CACHE_BYTES,
        full_logits: Tensor | None = None,
    ) -> None:
        self.gated, self.ablator, self.task = gated, ablator, task
        self.data, self.enabled, self.batch_size = data, list(enabled), batch_size
        self.cache_bytes = cache_bytes
        self.like = next(gated.model.parameters())
        self.parts = data.batches(batch_size)
        self._refs: list[_BatchReference] = []
        self._cached_bytes = 0
        if full_logits is not None and len(full_logits) != len(data):
            raise ValueError(
                f"{len(full_logits)} rows of full-model logits for {len(data)} prompts"
            )
        #: The full model's answer logits when already known (the filter's), else None.
        self.full_logits = full_logits

    def gates(self, masks: dict[str, Tensor]) -> dict[str, Tensor]:
        """Binary masks as gates of the enabled granularities (model dtype and device)."""
        from .granularity import GRANULARITIES

        dims = self.gated.loaded.dims
        return {
            g: masks[g]
            .to(dtype=self.like.dtype, device=self.like.device)
            .expand(GRANULARITIES[g].shape(dims))
            for g in self.enabled
        }

    def _reference(self, index: int, part: PromptBatch) -> tuple[_BatchReference, Ablated]:
        if index < len(self._refs):
            ref = self._refs[index]
            return ref, ref.ablated if ref.ablated is not None else self.ablator.values(part)
        args = (part.clean_ids, part.attention_mask, part.answer_pos)
        if self.full_logits is None:
            full = self.gated.plain_logits(*args)
        else:
            start = index * self.batch_size
            full = self.full_logits[start : start + len(part)].to(self.like.device)
        ablated = self.ablator.values(part)
        closed = self.gates({g: torch.zeros(1) for g in self.enabled})
        none = self.gated.gated_logits(*args, gates=closed, ablated=ablated)
        size = sum(v.numel() * v.element_size() for v in ablated.values.values())
        keep = self._cached_bytes + size <= self.cache_bytes
        self._cached_bytes += size if keep else 0
        ref = _BatchReference(
            torch.log_softmax(full.float(), -1),
            self.task.metric(full, part).float().cpu(),
            full.argmax(-1),
            self.task.metric(none, part).float().cpu(),
            ablated if keep else None,
        )
        self._refs.append(ref)
        return ref, ablated

    @torch.no_grad()
    def prepare(self) -> SplitReference:
        """Compute the references now (else on the first evaluation)."""
        for index, part in enumerate(self.parts[len(self._refs) :], start=len(self._refs)):
            self._reference(index, part.to(self.like.device))
        return self

    def first_prompts(self, n: int) -> SplitReference:
        """This reference on its first ``n`` prompts (rounded up to whole batches),
        sharing what it keeps: the target controller measures there every few steps,
        the final selection on every prompt."""
        self.prepare()
        k = max(1, min(len(self.parts), math.ceil(n / self.batch_size)))
        if k == len(self.parts):
            return self
        view = copy.copy(self)
        view.parts, view._refs = self.parts[:k], self._refs[:k]
        view.data = self.data.select(torch.arange(sum(len(p) for p in view.parts)))
        view.full_logits = None  # every batch's reference is already kept
        return view

    @property
    def batches_with_ablated(self) -> int:
        """How many batches' ablated values are kept (the rest are recorded per use)."""
        return sum(ref.ablated is not None for ref in self._refs)

    def forget_ablated(self) -> None:
        """Drop the kept ablated values: they are recorded again for every circuit."""
        for ref in self._refs:
            ref.ablated = None
        self._cached_bytes = 0

    @property
    def full_metric(self) -> Tensor:
        return torch.cat([ref.full_metric for ref in self.prepare()._refs])

    @property
    def ablated_metric(self) -> Tensor:
        return torch.cat([ref.ablated_metric for ref in self.prepare()._refs])

    def faithfulness_defined(self) -> bool:
        """Whether normalized faithfulness means anything on these prompts: the full model
        scores 1 unless full and fully ablated model score too alike (then NaN)."""
        value = estimate_faithfulness(self.full_metric, self.full_metric, self.ablated_metric)
        return not math.isnan(value.value)

    @torch.no_grad()
    def evaluate(
        self,
        gates: dict[str, Tensor] | None = None,
        circuit_logits: CircuitLogits | None = None,
    ) -> dict[str, float]:
        """Metrics of the circuit with ``gates`` (of the enabled granularities), or whose
        logits ``circuit_logits(batch, ablated)`` gives (the edge phase's edge-gated pass;
        the fully ablated model is still every gate of ``enabled`` closed, so node and
        edge circuits are measured against the same two ends)."""
        if circuit_logits is None:
            if gates is None or set(gates) != set(self.enabled):
                raise ValueError(
                    f"gates of {sorted(gates or {})} given to a reference of {self.enabled}"
                )
            circuit_logits = self._gated_logits(gates)
        *_, (sums, _, _) = self._read(circuit_logits)  # read every batch
        return sums.metrics()

    def _gated_logits(self, gates: dict[str, Tensor]) -> CircuitLogits:
        def circuit_logits(part: PromptBatch, ablated: Ablated) -> Tensor:
            args = (part.clean_ids, part.attention_mask, part.answer_pos)
            return self.gated.gated_logits(*args, gates=gates, ablated=ablated)

        return circuit_logits

    def _read(self, circuit_logits: CircuitLogits) -> Iterator[tuple[_MetricSums, int, bool]]:
        """A circuit's metric sums after each batch: the sums, the prompts read so far,
        whether it was the last batch."""
        sums, seen = _MetricSums(), 0
        for index, part in enumerate(self.parts):
            part = part.to(self.like.device)
            ref, ablated = self._reference(index, part)
            sums.add(self.task, part, ref, circuit_logits(part, ablated))
            seen += len(part)
            yield sums, seen, index + 1 == len(self.parts)

    def score(self, masks: dict[str, Tensor]) -> dict[str, float]:
        """Normalized faithfulness and KL of the binary circuit ``masks``."""
        metrics = self.evaluate(self.gates(masks))
        return {"faithfulness": metrics["normalized_faithfulness"], "kl": metrics["kl"]}

    @torch.no_grad()
    def decided_faithfulness(
        self, masks: dict[str, Tensor], target: float, first: int, level: float = DECISION_LEVEL
    ) -> tuple[float, bool]:
        """The normalized faithfulness of the binary circuit ``masks``, read batch by batch
        and stopped once at least ``first`` prompts are in and the ``level`` interval of
        those read lies wholly above or below ``target``: the threshold search asks only
        which side of its target a circuit is on, and most of its circuits are far from
        it. Returns the estimate and whether every prompt was read."""
        for sums, seen, last in self._read(self._gated_logits(self.gates(masks))):
            if seen >= first and not last:
                estimate = sums.faithfulness(level)
                if estimate.defined and (estimate.low > target or estimate.high < target):
                    return estimate.value, False
        return sums.metrics()["normalized_faithfulness"], True

    def pruning_harm(
        self,
        masks: dict[str, Tensor],
        kind: str,
        circuit_logits_of: Callable[[dict[str, Tensor]], CircuitLogits] | None = None,
    ) -> dict[str, Tensor]:
        """Per gate of the enabled granularities, the first-order estimate of how much
        closing it, from the binary circuit ``masks``, worsens the target's quantity
        (``kind``: "faithfulness" or "kl"): d(faithfulness)/d(gate), or -d(KL)/d(gate).
        One backward pass per batch, from the kept ablated values. ``circuit_logits_of``
        (the edge phase's): the logits of the circuit whose gates are ``masks`` (as
        given, any keys), in place of the node-gated pass of the enabled granularities.

        The threshold search orders gates by log-alpha; gates training drove to the same
        clamp (+-10) tie there, and this orders them instead of dropping them all at once."""
        self.prepare()
        denom = float(self.full_metric.double().mean() - self.ablated_metric.double().mean())
        n = len(self.data)
        if circuit_logits_of is None:
            gates = {g: t.clone().requires_grad_(True) for g, t in self.gates(masks).items()}
            logits_of = self._gated_logits(gates)
        else:
            like = self.like
            gates = {
                k: t.to(dtype=like.dtype, device=like.device).clone().requires_grad_(True)
                for k, t in masks.items()
            }
            logits_of = circuit_logits_of(gates)
        totals = {g: torch.zeros(t.shape, dtype=torch.float32) for g, t in gates.items()}
        for index, part in enumerate(self.parts):
            part = part.to(self.like.device)
            with torch.no_grad():
                ref, ablated = self._reference(index, part)
            with torch.enable_grad():
                logits = logits_of(part, ablated)
                if kind == "kl":
                    value = -kl_full_to_circuit(ref.full_logprobs, logits).float().sum() / n
                else:
                    value = self.task.metric(logits, part).float().sum() / (n * denom)
                grads = torch.autograd.grad(value, list(gates.values()), allow_unused=True)
            for g, grad in zip(gates, grads, strict=True):
                if grad is not None:
                    totals[g] += grad.detach().float().cpu()
        return totals


def evaluate_gates(
    gated: GatedModel,
    ablator: Ablator,
    task: Task,
    data: PromptBatch,
    gates: dict[str, Tensor],
    batch_size: int = 32,
    circuit_logits: CircuitLogits | None = None,
) -> dict[str, float]:
    """Run full, circuit and fully-ablated models on ``data``; return the metrics (one
    evaluation that keeps nothing; a :class:`SplitReference` for many)."""
    reference = SplitReference(gated, ablator, task, data, list(gates), batch_size, cache_bytes=0)
    return reference.evaluate(gates, circuit_logits)
