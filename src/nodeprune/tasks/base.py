"""The Task interface: prompt pairs with an answer and a distractor token."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # torch is imported where tensors are made: listing tasks and
    # checking a task name need none
    from torch import Tensor

from ..prompts import Example, PromptBatch, encode_examples


class Task:
    """A behaviour to find a circuit for. Subclasses implement :meth:`generate`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Which corruption scheme ``generate`` uses, said in reports.
    corruption: ClassVar[str] = ""
    #: What :meth:`metric` measures; the circuit file keeps the key ``logit_diff``.
    metric_label: ClassVar[str] = "logit diff"

    def generate(self, n: int, rng: random.Random, tokenizer: object) -> list[Example]:
        raise NotImplementedError

    def generate_split(self, split: str, n: int, seed: int, tokenizer: object) -> list[Example]:
        """The examples of one split. Each split has its own RNG stream, so changing one
        size leaves the others alone; tasks backed by a fixed pool (custom files)
        override this to keep their splits disjoint."""
        return self.generate(n, random.Random(f"{self.name}/{split}/{seed}"), tokenizer)

    def extras(self, examples: list[Example], tokenizer: object) -> dict[str, Tensor]:
        """Task-specific tensors [B, ...] that :meth:`metric` needs (PromptBatch.extras)."""
        return {}

    def encode(self, examples: list[Example], tokenizer: object) -> PromptBatch:
        """Tokenise examples into a batch, with this task's extras."""
        batch = encode_examples(examples, tokenizer)
        batch.extras.update(self.extras(list(examples), tokenizer))
        return batch

    def metric(self, logits: Tensor, batch: PromptBatch) -> Tensor:
        """Per-example task metric on answer-position logits [B, V]: by default the
        logit difference between the answer and the distractor."""
        import torch

        rows = torch.arange(logits.shape[0], device=logits.device)
        return logits[rows, batch.answer_ids] - logits[rows, batch.distractor_ids]

    def correct(self, logits: Tensor, batch: PromptBatch) -> Tensor:
        """Whether each example is answered correctly (used for filtering and accuracy)."""
        return self.metric(logits, batch) > 0
