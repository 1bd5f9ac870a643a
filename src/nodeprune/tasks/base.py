"""The Task interface: prompt pairs with an answer and a distractor token."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..data import PromptBatch


@dataclass(frozen=True)
class Example:
    """One prompt pair. ``answer``/``distractor`` are the next tokens as text,
    with their leading space (``" Mary"``), and must be single tokens."""

    clean: str
    corrupted: str
    answer: str
    distractor: str


class Task:
    """A behaviour to find a circuit for. Subclasses implement :meth:`generate`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Which corruption scheme ``generate`` uses, said in reports.
    corruption: ClassVar[str] = ""

    def generate(self, n: int, rng: random.Random, tokenizer: object) -> list[Example]:
        raise NotImplementedError

    def metric(self, logits: Tensor, batch: PromptBatch) -> Tensor:
        """Per-example task metric on answer-position logits [B, V]: by default the
        logit difference between the answer and the distractor."""
        rows = torch.arange(logits.shape[0], device=logits.device)
        return logits[rows, batch.answer_ids] - logits[rows, batch.distractor_ids]

    def correct(self, logits: Tensor, batch: PromptBatch) -> Tensor:
        """Whether each example is answered correctly (used for filtering and accuracy)."""
        return self.metric(logits, batch) > 0
