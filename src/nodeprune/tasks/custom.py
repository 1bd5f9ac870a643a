"""Custom tasks from a file of prompt pairs (``nodeprune discover --task-file FILE``).

File formats: see :mod:`nodeprune.tasks.custom_file`. Tokenizer rules, checked when the
examples are drawn (each failure names the file and line):

* clean and corrupted prompts must tokenize to the same number of tokens;
* **multi-token answers are scored on their first token**: " New York" counts as " New".
  An answer and a distractor whose first tokens coincide cannot be told apart at the
  scored position and are rejected.

Splits: lines with a ``split`` field go to that split (when no line says ``test``, the
``validation`` lines serve as the test split too, as in Edge Pruning, and vice versa).
Lines without one are shuffled with a fixed key -- the same for every seed, so test
prompts never leak into training across runs -- and cut 70/10/20 into train, validation
and test (at least one each). The seed then picks which ``n`` of a split's pool are used;
a split asked for more examples than its pool holds gets the whole pool.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from torch import Tensor

from ..data import PromptBatch
from ..errors import NodepruneError
from .base import Example, Task
from .custom_file import Record, load_records

TEST_FRACTION, VALIDATION_FRACTION = 0.2, 0.1
_SPLIT_KEY = "nodeprune-custom-split"


class CustomTask(Task):
    name = "custom"
    description = (
        "prompt pairs from a file (--task-file): nodeprune/Edge Pruning JSONL, auto-circuit"
    )
    corruption = "as given in the file"

    def __init__(self, path: str | Path, records: list[Record], file_format: str) -> None:
        self.path = str(path)
        self.records = records
        self.file_format = file_format
        # The file's name goes into circuits (Circuit.task); its path is in the config.
        self.name = f"custom:{Path(path).name}"
        self._pools = _split_pools(self.path, records)
        # A fixed width, so batches of this task can be concatenated.
        self._set_width = max(max(len(r.answers), len(r.distractors)) for r in records)

    @classmethod
    def from_file(cls, path: str | Path) -> CustomTask:
        file_format, records = load_records(path)
        return cls(path, records, file_format)

    def generate(self, n: int, rng: random.Random, tokenizer: object) -> list[Example]:
        chosen = rng.sample(self.records, min(n, len(self.records)))
        return [to_example(r, tokenizer) for r in chosen]

    def generate_split(self, split: str, n: int, seed: int, tokenizer: object) -> list[Example]:
        pool = self._pools[split]
        rng = random.Random(f"{self.name}/{split}/{seed}")
        return [to_example(r, tokenizer) for r in rng.sample(pool, min(n, len(pool)))]

    def extras(self, examples: list[Example], tokenizer: object) -> dict[str, Tensor]:
        answers = [_token_ids(e.answers or (e.answer,), tokenizer) for e in examples]
        wrong = [_token_ids(e.distractors or (e.distractor,), tokenizer) for e in examples]
        width = self._set_width
        return {**_padded("answer", answers, width), **_padded("wrong", wrong, width)}

    def metric(self, logits: Tensor, batch: PromptBatch) -> Tensor:
        """Mean logit of the answers minus mean logit of the wrong answers (the plain
        logit difference when each example has one of each)."""
        if "answer_set" not in batch.extras:
            return super().metric(logits, batch)
        return _set_mean(logits, batch, "answer") - _set_mean(logits, batch, "wrong")


def to_example(record: Record, tokenizer: object) -> Example:
    """Check a record against the tokenizer and turn it into an Example whose answers
    are the first tokens of the record's answers (see the module docstring)."""
    where = record.where
    clean, corrupted = tokenizer.encode(record.clean), tokenizer.encode(record.corrupted)
    if len(clean) != len(corrupted):
        raise NodepruneError(
            f"{where}: clean and corrupted prompts tokenize to {len(clean)} and "
            f"{len(corrupted)} tokens; they must align token by token (use replacements "
            "that are the same number of tokens)"
        )
    answers = [_first_token(where, "answer", a, tokenizer) for a in record.answers]
    wrong = [_first_token(where, "distractor", d, tokenizer) for d in record.distractors]
    shared = {t for t, _ in answers} & {t for t, _ in wrong}
    if shared:
        text = tokenizer.decode([shared.pop()])
        raise NodepruneError(
            f"{where}: an answer and a distractor both start with the token {text!r}; "
            "multi-token answers are scored on their first token, so they must differ there"
        )
    answer_texts = tuple(dict.fromkeys(t for _, t in answers))
    wrong_texts = tuple(dict.fromkeys(t for _, t in wrong))
    return Example(
        record.clean,
        record.corrupted,
        answer_texts[0],
        wrong_texts[0],
        answers=answer_texts,
        distractors=wrong_texts,
    )


def _first_token(where: str, label: str, text: str, tokenizer: object) -> tuple[int, str]:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        raise NodepruneError(f"{where}: {label} {text!r} tokenizes to nothing")
    first = tokenizer.decode([ids[0]])
    if tokenizer.encode(first, add_special_tokens=False) != [ids[0]]:
        raise NodepruneError(
            f"{where}: the first token of {label} {text!r} is part of a character and "
            "cannot stand alone; use an answer whose first token is whole text"
        )
    return ids[0], first


def _split_pools(path: str, records: list[Record]) -> dict[str, list[Record]]:
    pools: dict[str, list[Record]] = {"train": [], "validation": [], "test": []}
    unlabeled = [r for r in records if r.split is None]
    for r in records:
        if r.split is not None:
            pools[r.split].append(r)
    if unlabeled:
        if len(unlabeled) < 3 and not pools["train"]:
            raise NodepruneError(
                f"{path}: {len(records)} example(s) is too few to split into train, validation "
                'and test; give at least 3, or mark lines with "split"'
            )
        random.Random(_SPLIT_KEY).shuffle(unlabeled)
        n = len(unlabeled)
        n_test = max(1, round(TEST_FRACTION * n)) if n >= 3 else 0
        n_val = max(1, round(VALIDATION_FRACTION * n)) if n >= 3 else 0
        pools["test"] += unlabeled[:n_test]
        pools["validation"] += unlabeled[n_test : n_test + n_val]
        pools["train"] += unlabeled[n_test + n_val :]
    if not pools["test"]:
        pools["test"] = pools["validation"]
    if not pools["validation"]:
        pools["validation"] = pools["test"]
    for split in ("train", "test"):
        if not pools[split]:
            raise NodepruneError(
                f'{path}: no {split} examples (every line\'s "split" names another split); '
                f'mark some lines "split": "{split}" or drop the split fields'
            )
    return pools


def _token_ids(texts: tuple[str, ...], tokenizer: object) -> list[int]:
    return [tokenizer.encode(t, add_special_tokens=False)[0] for t in texts]


def _padded(prefix: str, rows: list[list[int]], width: int) -> dict[str, Tensor]:
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1.0
    return {f"{prefix}_set": ids, f"{prefix}_mask": mask}


def _set_mean(logits: Tensor, batch: PromptBatch, prefix: str) -> Tensor:
    ids = batch.extras[f"{prefix}_set"].to(logits.device)
    mask = batch.extras[f"{prefix}_mask"].to(logits.device)
    return (logits.gather(1, ids) * mask).sum(1) / mask.sum(1)
