"""Train/validation/test splits of a task, tokenised and filtered by the full model."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .errors import NodepruneError
from .fsutil import warn
from .intervention import GatedModel
from .prompts import PromptBatch
from .tasks.base import Example, Task

SPLITS = ("train", "validation", "test")


@dataclass
class TaskData:
    train: PromptBatch
    validation: PromptBatch | None
    test: PromptBatch
    #: per split: examples generated, and kept after filtering
    counts: dict[str, dict[str, int]]
    #: per split, the full model's logits at the answer positions ([n, vocab], float32,
    #: CPU) when filtering computed them: the reference outputs of training and evaluation
    #: reuse them instead of another full pass over each split.
    full_logits: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class SplitPlan:
    """Which prompts a run uses: prompts per split (``train``, ``validation``, ``test``),
    their seed, whether the prompts the full model gets wrong are dropped, and the batch
    size of the passes that filter and record them."""

    sizes: dict[str, int]
    seed: int
    filter_correct: bool = True
    batch_size: int = 32

    def build(self, gated: GatedModel, task: Task) -> TaskData:
        return build_task_data(
            gated, task, self.sizes, self.seed, self.filter_correct, self.batch_size
        )


def generate_split(task: Task, split: str, n: int, seed: int, tokenizer: object) -> list[Example]:
    # Each split has its own RNG stream (Task.generate_split), so changing one size
    # leaves the others alone.
    return task.generate_split(split, n, seed, tokenizer)


@torch.no_grad()
def keep_correct(
    gated: GatedModel, task: Task, batch: PromptBatch, batch_size: int
) -> tuple[PromptBatch, Tensor]:
    """The examples that the full model answers correctly, and its answer logits on them."""
    device = gated.loaded.device
    keep, answer_logits = [], []
    for part in batch.batches(batch_size):
        part = part.to(device)
        logits = gated.plain_logits(part.clean_ids, part.attention_mask, part.answer_pos)
        keep.append(task.correct(logits, part).cpu())
        answer_logits.append(logits.float().cpu())
    index = torch.cat(keep).nonzero().flatten()
    return batch.select(index), torch.cat(answer_logits)[index]


def held_out(
    task: Task, split: str, examples: list[Example], train_prompts: set[str]
) -> list[Example]:
    """The examples of a held-out split that are not training prompts. When none is
    left, the split would measure the training set: refused, never filled back in."""
    kept = [e for e in examples if e.clean not in train_prompts]
    if examples and not kept:
        raise NodepruneError(
            f"task {task.name!r}: all {len(examples)} {split} prompts are also training "
            f"prompts (a task file that repeats the same prompt?), so the {split} metrics "
            "would be measured on the training set; give more distinct prompt pairs"
        )
    if 2 * len(kept) < len(examples):
        warn(
            f"task {task.name!r}: only {len(kept)} of the {len(examples)} {split} prompts "
            f"are not also training prompts; the {split} metrics use those {len(kept)}"
        )
    return kept


def build_task_data(
    gated: GatedModel,
    task: Task,
    sizes: dict[str, int],
    seed: int,
    filter_correct: bool = True,
    batch_size: int = 32,
) -> TaskData:
    tokenizer = gated.loaded.tokenizer
    out: dict[str, PromptBatch | None] = {}
    counts: dict[str, dict[str, int]] = {}
    full_logits: dict[str, Tensor] = {}
    train_prompts: set[str] = set()
    for split in SPLITS:
        n = sizes.get(split, 0)
        if n <= 0:
            out[split] = None
            continue
        examples = generate_split(task, split, n, seed, tokenizer)
        if split == "train":
            train_prompts = {e.clean for e in examples}
        else:  # held-out prompts are never trained on
            examples = held_out(task, split, examples, train_prompts)
        batch = task.encode(examples, tokenizer)  # with the task's metric extras
        generated = len(batch)
        if filter_correct:
            batch, full_logits[split] = keep_correct(gated, task, batch, batch_size)
        counts[split] = {"generated": generated, "kept": len(batch)}
        if len(batch) == 0:
            raise NodepruneError(
                f"the model answers none of the {generated} {split} examples of task "
                f"{task.name!r} correctly, so nothing is left to find a circuit for; use a "
                "model that can do the task, or pass --no-filter to keep all examples"
            )
        out[split] = batch
    assert out["train"] is not None and out["test"] is not None
    return TaskData(out["train"], out["validation"], out["test"], counts, full_logits)
