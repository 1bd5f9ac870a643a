"""Custom tasks from a file of prompt pairs (``nodeprune discover --task-file FILE``).

File formats: see :mod:`nodeprune.tasks.custom_file`. Tokenizer rules, checked when the
examples are drawn (each failure names the file and line):

* clean and corrupted prompts must tokenize to the same number of tokens;
* **multi-token answers are scored at their first differing token**. Each answer and
  distractor is tokenized as it continues the clean prompt; the tokens they all start
  with are appended to both prompts, and the next token of each is scored. So " New
  York" vs " Boston" scores " New" vs " Boston", " New York" vs " New Delhi" scores
  " York" vs " Delhi" after the prompt + " New", and with a tokenizer that writes " 3"
  as " " + "3" (SmolLM2) " 3" vs " 5" scores "3" vs "5" after the prompt + " ". An
  answer that is the start of all the others (" New" vs " New York"), or an answer and a
  distractor that still share the scored token, are rejected with the line number.

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
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are made: listing tasks and
    # checking a task name need none
    from torch import Tensor

from ..errors import NodepruneError
from ..fsutil import sha256_file
from ..prompts import PromptBatch, check_prompt_length, prompt_token_limit
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
    #: SHA-256 of the file's content when it was read: checkpoints and circuits keep it,
    #: so that a resume or an evaluation notices a file edited since.
    file_sha256: str | None = None

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
        task = cls(path, records, file_format)
        task.file_sha256 = sha256_file(path)
        return task

    def generate(self, n: int, rng: random.Random, tokenizer: object) -> list[Example]:
        # Every record is checked, not only the drawn ones, so a bad line is always found.
        examples = [to_example(r, tokenizer) for r in self.records]
        return rng.sample(examples, min(n, len(examples)))

    def generate_split(self, split: str, n: int, seed: int, tokenizer: object) -> list[Example]:
        pool = [to_example(r, tokenizer) for r in self._pools[split]]
        rng = random.Random(f"{self.name}/{split}/{seed}")
        return rng.sample(pool, min(n, len(pool)))

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
    """Check a record against the tokenizer and turn it into an Example scored at the
    first token where the answers and distractors differ (see the module docstring)."""
    where = record.where
    prompt_ids = tokenizer.encode(record.clean)
    limit = prompt_token_limit(tokenizer)
    check_prompt_length(len(prompt_ids), limit, where)
    labelled = [("answer", a) for a in record.answers]
    labelled += [("distractor", d) for d in record.distractors]
    sequences = [
        _continuation(where, label, record.clean, prompt_ids, text, tokenizer)
        for label, text in labelled
    ]
    shared = _common_prefix(sequences)
    for (label, text), seq in zip(labelled, sequences, strict=True):
        if len(seq) == len(shared):
            raise NodepruneError(
                f"{where}: {label} {text!r} is the start of every other answer and distractor, "
                "so no token tells them apart; make them differ in some token"
            )
    clean, corrupted = record.clean, record.corrupted
    if shared:
        # The tokens every continuation starts with become part of both prompts.
        shared_text = tokenizer.decode(shared)
        clean, corrupted = clean + shared_text, corrupted + shared_text
        if tokenizer.encode(clean) != prompt_ids + shared:
            raise NodepruneError(
                f"{where}: the answers all start with {shared_text!r}, which tokenizes "
                "differently once appended to the prompt; end the prompt with it yourself"
            )
    scored = [seq[len(shared)] for seq in sequences]
    texts = [
        _standalone(where, label, text, tok, tokenizer)
        for (label, text), tok in zip(labelled, scored, strict=True)
    ]
    n_answers = len(record.answers)
    overlap = set(scored[:n_answers]) & set(scored[n_answers:])
    if overlap:
        raise NodepruneError(
            f"{where}: an answer and a distractor both continue with the token "
            f"{tokenizer.decode([overlap.pop()])!r} where they are scored; multi-token answers "
            "are scored at their first differing token, so they must differ there"
        )
    clean_ids, corrupted_ids = tokenizer.encode(clean), tokenizer.encode(corrupted)
    check_prompt_length(max(len(clean_ids), len(corrupted_ids)), limit, where)
    if len(clean_ids) != len(corrupted_ids):
        raise NodepruneError(
            f"{where}: clean and corrupted prompts tokenize to {len(clean_ids)} and "
            f"{len(corrupted_ids)} tokens; they must align token by token (use replacements "
            "that are the same number of tokens)"
        )
    answer_texts = tuple(dict.fromkeys(texts[:n_answers]))
    wrong_texts = tuple(dict.fromkeys(texts[n_answers:]))
    return Example(
        clean,
        corrupted,
        answer_texts[0],
        wrong_texts[0],
        answers=answer_texts,
        distractors=wrong_texts,
    )


def _continuation(
    where: str, label: str, prompt: str, prompt_ids: list[int], text: str, tokenizer: object
) -> list[int]:
    """The tokens ``text`` adds after ``prompt`` when the two are written together (or,
    where the tokenizer merges across the boundary, ``text`` tokenized alone)."""
    joined = tokenizer.encode(prompt + text)
    if joined[: len(prompt_ids)] == prompt_ids and len(joined) > len(prompt_ids):
        return joined[len(prompt_ids) :]
    alone = tokenizer.encode(text, add_special_tokens=False)
    if not alone:
        raise NodepruneError(f"{where}: {label} {text!r} tokenizes to nothing")
    return alone


def _common_prefix(sequences: list[list[int]]) -> list[int]:
    prefix: list[int] = []
    for tokens in zip(*sequences, strict=False):
        if len(set(tokens)) > 1:
            break
        prefix.append(tokens[0])
    return prefix


def _standalone(where: str, label: str, text: str, token: int, tokenizer: object) -> str:
    """The scored token as text that tokenizes back to exactly that token."""
    piece = tokenizer.decode([token])
    if tokenizer.encode(piece, add_special_tokens=False) != [token]:
        raise NodepruneError(
            f"{where}: the scored token {piece!r} of {label} {text!r} does not tokenize back "
            "to itself (part of a character?); rephrase the answer"
        )
    return piece


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
    import torch

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
