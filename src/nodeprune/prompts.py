"""Prompt pairs: as text (Example), and tokenised (PromptBatch: padded on the right, with
per-example answer positions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are made: listing tasks and
    # checking a task name need none
    import torch
    from torch import Tensor

from .errors import NodepruneError


@dataclass(frozen=True)
class Example:
    """One prompt pair. ``answer``/``distractor`` are the next tokens as text,
    with their leading space (``" Mary"``), and must be single tokens."""

    clean: str
    corrupted: str
    answer: str
    distractor: str
    #: Optional sets of correct / wrong next tokens (auto-circuit style); when given,
    #: tasks that support them score the mean logit of ``answers`` minus the mean
    #: logit of ``distractors``. ``answer``/``distractor`` are then their first members.
    answers: tuple[str, ...] = ()
    distractors: tuple[str, ...] = ()


@dataclass
class PromptBatch:
    clean_ids: Tensor  # [B, T]
    corrupted_ids: Tensor  # [B, T], aligned token by token with clean_ids
    attention_mask: Tensor  # [B, T], 1 for real tokens (right padding)
    answer_pos: Tensor  # [B], position whose next-token prediction is scored
    answer_ids: Tensor  # [B]
    distractor_ids: Tensor  # [B]
    extras: dict[str, Tensor] = field(default_factory=dict)  # task-specific, [B, ...]

    def __len__(self) -> int:
        return int(self.clean_ids.shape[0])

    def _tensor_fields(self) -> list[str]:
        return [f.name for f in fields(self) if f.name != "extras"]

    def select(self, index: Tensor | slice) -> PromptBatch:
        """A sub-batch, trimmed to its own longest prompt."""
        parts = {name: getattr(self, name)[index] for name in self._tensor_fields()}
        extras = {k: v[index] for k, v in self.extras.items()}
        batch = PromptBatch(**parts, extras=extras)
        width = int(batch.attention_mask.sum(1).max()) if len(batch) else 0
        return replace(
            batch,
            clean_ids=batch.clean_ids[:, :width],
            corrupted_ids=batch.corrupted_ids[:, :width],
            attention_mask=batch.attention_mask[:, :width],
        )

    def to(self, device: torch.device | str) -> PromptBatch:
        parts = {name: getattr(self, name).to(device) for name in self._tensor_fields()}
        return PromptBatch(**parts, extras={k: v.to(device) for k, v in self.extras.items()})

    def batches(self, size: int) -> list[PromptBatch]:
        return [self.select(slice(i, i + size)) for i in range(0, len(self), size)]


#: Longest prompt, in tokens, when neither the model nor its tokenizer states a limit
#: (models.wrap_model copies the model's maximum positions onto the tokenizer).
MAX_PROMPT_TOKENS = 8192


def prompt_token_limit(tokenizer: object) -> int:
    """The most tokens a prompt may have: the tokenizer's ``model_max_length`` (which
    Hugging Face sets to a huge sentinel when unknown), capped at MAX_PROMPT_TOKENS."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < MAX_PROMPT_TOKENS:
        return limit
    return MAX_PROMPT_TOKENS


def check_prompt_length(n_tokens: int, limit: int, where: str) -> None:
    """Refuse a prompt the model cannot take, before any tensor is built (an embedding
    index error, or attention memory quadratic in the length, otherwise)."""
    if n_tokens > limit:
        raise NodepruneError(
            f"{where}: the prompt is {n_tokens} tokens long, more than the {limit} this "
            "model takes; shorten it"
        )


def single_token_id(tokenizer: object, text: str) -> int | None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def encode_examples(examples: Sequence[Example], tokenizer: object) -> PromptBatch:
    """Tokenise prompt pairs; answers must be single tokens, pairs equally long."""
    import torch

    if not examples:
        raise NodepruneError("no examples to encode")
    clean, corrupted, answers, distractors = [], [], [], []
    limit = prompt_token_limit(tokenizer)
    for i, ex in enumerate(examples):
        c = tokenizer.encode(ex.clean)
        k = tokenizer.encode(ex.corrupted)
        check_prompt_length(max(len(c), len(k)), limit, f"example {i} ({ex.clean[:40]!r}...)")
        if len(c) != len(k):
            raise NodepruneError(
                f"example {i}: clean and corrupted prompts tokenize to {len(c)} and {len(k)} "
                f"tokens ({ex.clean!r} / {ex.corrupted!r}); interchange ablation needs them "
                "aligned token by token: use replacements of equal token length"
            )
        if len(c) == 0:
            raise NodepruneError(f"example {i}: the clean prompt is empty")
        ids = []
        for label, text in (("answer", ex.answer), ("distractor", ex.distractor)):
            tok = single_token_id(tokenizer, text)
            if tok is None:
                raise NodepruneError(
                    f"example {i}: {label} {text!r} is not a single token for this tokenizer "
                    f"({tokenizer.encode(text, add_special_tokens=False)}); "
                    "answers must be one token (mind the leading space)"
                )
            ids.append(tok)
        clean.append(c)
        corrupted.append(k)
        answers.append(ids[0])
        distractors.append(ids[1])
    width = max(len(c) for c in clean)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n = len(examples)
    clean_ids = torch.full((n, width), pad, dtype=torch.long)
    corrupted_ids = torch.full((n, width), pad, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, (c, k) in enumerate(zip(clean, corrupted, strict=True)):
        clean_ids[i, : len(c)] = torch.tensor(c)
        corrupted_ids[i, : len(k)] = torch.tensor(k)
        mask[i, : len(c)] = 1
    return PromptBatch(
        clean_ids=clean_ids,
        corrupted_ids=corrupted_ids,
        attention_mask=mask,
        answer_pos=mask.sum(1) - 1,
        answer_ids=torch.tensor(answers),
        distractor_ids=torch.tensor(distractors),
    )
