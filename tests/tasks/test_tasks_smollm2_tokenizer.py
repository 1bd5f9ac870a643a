"""The generators and the custom-file rules with the real SmolLM2 tokenizer (loaded
alone, without the model weights)."""

from __future__ import annotations

import json
import random

import pytest

from nodeprune.prompts import single_token_id
from nodeprune.tasks import TASKS, get_task
from nodeprune.tasks.custom import CustomTask, to_example
from nodeprune.tasks.greater_than import year_scheme

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from nodeprune.models import load_tokenizer

    return load_tokenizer("smollm2-135m")


@pytest.mark.parametrize("name", list(TASKS))
def test_generators_give_valid_examples(name, smollm2_tokenizer):
    task = get_task(name)
    examples = task.generate(64, random.Random(0), smollm2_tokenizer)
    assert examples == task.generate(64, random.Random(0), smollm2_tokenizer)
    for ex in examples:
        assert single_token_id(smollm2_tokenizer, ex.answer) is not None
        assert single_token_id(smollm2_tokenizer, ex.distractor) is not None
        assert ex.answer != ex.distractor
    batch = task.encode(examples, smollm2_tokenizer)
    assert (batch.clean_ids != batch.corrupted_ids).any(1).all()


def test_smollm2_writes_years_digit_by_digit(smollm2_tokenizer):
    scheme = year_scheme(smollm2_tokenizer, "The war lasted from the year 1750 to the year 17")
    assert scheme.kind == "digits"


def test_edge_pruning_arithmetic_file(tmp_path, smollm2_tokenizer):
    path = tmp_path / "sums.jsonl"
    lines = [
        {
            "clean": f"{a} + {b} = <predict>{a + b}</predict>",
            "corrupted": f"{a} + {b + 2} = <predict>{a + b + 2}</predict>",
        }
        for a, b in [(1, 2), (3, 4), (2, 5), (6, 1), (4, 4)]
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines))
    task = CustomTask.from_file(path)
    for record in task.records:
        example = to_example(record, smollm2_tokenizer)
        # SmolLM2 writes " 3" as " " + "3": the shared " " joins both prompts and the
        # digits are scored.
        assert example.clean == record.clean + " "
        assert example.corrupted == record.corrupted + " "
        assert example.answer == record.answers[0].strip()[0]
        assert example.distractor == record.distractors[0].strip()[0]
    batch = task.encode(task.generate(5, random.Random(0), smollm2_tokenizer), smollm2_tokenizer)
    assert len(batch) == 5
