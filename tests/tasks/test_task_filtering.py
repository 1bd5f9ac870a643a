"""build_task_data keeps only the examples the full model answers correctly, counts
them, and says what to do when none are left -- for every task."""

from __future__ import annotations

import pytest
import torch

from nodeprune.errors import NodepruneError
from nodeprune.intervention import GatedModel
from nodeprune.splits import build_task_data, generate_split
from nodeprune.tasks import TASKS, get_task

# A random tiny model favours one answer token, so about half the examples are
# correct; these sizes leave some in every split.
SIZES = {"train": 16, "validation": 0, "test": 16}


@pytest.mark.parametrize("name", list(TASKS))
def test_filtering_keeps_exactly_the_correct_examples(name, llama_model):
    task = get_task(name)
    gated = GatedModel(llama_model)
    try:
        data = build_task_data(gated, task, SIZES, seed=0, filter_correct=True)
        tokenizer = llama_model.tokenizer
        for split, batch in (("train", data.train), ("test", data.test)):
            counts = data.counts[split]
            # Independently: run the full model on everything generated for the split.
            everything = task.encode(
                generate_split(task, split, SIZES[split], 0, tokenizer), tokenizer
            )
            logits = gated.plain_logits(
                everything.clean_ids, everything.attention_mask, everything.answer_pos
            )
            correct = task.correct(logits, everything)
            if split == "train":
                assert counts == {"generated": SIZES[split], "kept": int(correct.sum())}
            assert counts["kept"] == len(batch) <= counts["generated"]
            kept_logits = gated.plain_logits(
                batch.clean_ids, batch.attention_mask, batch.answer_pos
            )
            assert task.correct(kept_logits, batch).all()
        unfiltered = build_task_data(gated, task, SIZES, seed=0, filter_correct=False)
        assert all(c["kept"] == c["generated"] for c in unfiltered.counts.values())
    finally:
        gated.remove()


@pytest.mark.parametrize("name", list(TASKS))
def test_nothing_left_after_filtering_is_an_error_that_says_what_to_do(
    name, llama_model, monkeypatch
):
    task = get_task(name)
    monkeypatch.setattr(
        task, "correct", lambda logits, batch: torch.zeros(len(batch), dtype=torch.bool)
    )
    gated = GatedModel(llama_model)
    try:
        with pytest.raises(NodepruneError, match="--no-filter"):
            build_task_data(gated, task, SIZES, seed=0, filter_correct=True)
    finally:
        gated.remove()
