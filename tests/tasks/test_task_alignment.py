"""Batches of prompts of different lengths: right padding and per-example answer
positions give, for every architecture family and every task, the same answer logits
as running each prompt alone."""

from __future__ import annotations

import random

import pytest
import torch

from nodeprune.errors import NodepruneError
from nodeprune.intervention import GatedModel
from nodeprune.prompts import encode_examples
from nodeprune.tasks import TASKS, Example, get_task


@pytest.mark.parametrize("name", list(TASKS))
def test_answer_positions_in_mixed_length_batches(name, family_model):
    task = get_task(name)
    tokenizer = family_model.tokenizer
    examples = task.generate(8, random.Random(7), tokenizer)
    batch = task.encode(examples, tokenizer)
    lengths = [len(tokenizer.encode(e.clean)) for e in examples]
    assert len(set(lengths)) > 1, "the batch should mix prompt lengths"
    assert batch.answer_pos.tolist() == [n - 1 for n in lengths]
    gated = GatedModel(family_model)
    try:
        together = gated.plain_logits(batch.clean_ids, batch.attention_mask, batch.answer_pos)
        for i, ex in enumerate(examples):
            ids = torch.tensor([tokenizer.encode(ex.clean)])
            assert batch.clean_ids[i, batch.answer_pos[i]] == ids[0, -1]
            alone = gated.plain_logits(ids, torch.ones_like(ids), torch.tensor([ids.shape[1] - 1]))
            torch.testing.assert_close(together[i], alone[0], atol=2e-4, rtol=1e-4)
    finally:
        gated.remove()


def test_clean_and_corrupted_of_different_token_length_are_rejected(tokenizer):
    bad = Example("When Mary and John went out, John", "When Mary went out, John", " Mary", " John")
    with pytest.raises(NodepruneError, match="example 0: clean and corrupted prompts tokenize"):
        encode_examples([bad], tokenizer)
