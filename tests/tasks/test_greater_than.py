"""Greater-than on digit tokenizers (SmolLM2 style) and whole-number tokenizers (GPT-2
style): the year scheme, the signed weights and the probability-mass metric."""

from __future__ import annotations

import random
import re

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from nodeprune.errors import NodepruneError
from nodeprune.tasks.greater_than import GreaterThanTask, start_year, year_scheme
from nodeprune.tasks.vocab import WhitespaceTokenizer

PREFIX = "The war lasted from the year 1750 to the year 17"


@pytest.fixture(scope="module")
def whole_number_tokenizer() -> PreTrainedTokenizerFast:
    """A BPE tokenizer trained in-process that, like GPT-2's, writes 1732 as 17|32."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\d\d"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    years = " ".join(f"the year 17{yy:02d}" for yy in range(100))
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([years] * 5 + ["The war lasted from to until went on ran"] * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.pad_token = fast.eos_token
    return fast


def test_digit_tokenizers_get_the_digit_scheme(tokenizer):
    scheme = year_scheme(tokenizer, PREFIX)
    assert scheme.kind == "digits"
    assert [tokenizer.decode([i]) for i in scheme.ids] == [str(d) for d in range(10)]


def test_whole_number_tokenizers_get_the_whole_scheme(whole_number_tokenizer):
    scheme = year_scheme(whole_number_tokenizer, PREFIX)
    assert scheme.kind == "whole"
    assert [whole_number_tokenizer.decode([i]) for i in scheme.ids] == [
        f"{yy:02d}" for yy in range(100)
    ]


def test_inconsistent_year_tokenization_is_rejected():
    class SomeYearsWhole(WhitespaceTokenizer):
        # "32" is one token, every other number is split into digits.
        _PIECE = re.compile(r" ?[^\W\d_]+|32| ?\d|.", re.S)

    with pytest.raises(NodepruneError, match="two-digit years"):
        year_scheme(SomeYearsWhole(), PREFIX)


def test_digit_weights_split_only_the_start_decade():
    scheme = year_scheme(WhitespaceTokenizer(), PREFIX)
    weights = scheme.weights(32)
    # 1740-1799 are all later than 1732, 1700-1729 all earlier; of 1730-1739,
    # seven (33-39) are later and three (30-32) are not.
    assert weights[4:] == [1.0] * 6
    assert weights[:3] == [-1.0] * 3
    assert weights[3] == pytest.approx((7 - 3) / 10)
    assert scheme.weights(39)[3] == pytest.approx(-1.0)  # nothing later in 1730-1739


def test_whole_weights_are_plus_one_above_and_minus_one_up_to_the_start(
    whole_number_tokenizer,
):
    weights = year_scheme(whole_number_tokenizer, PREFIX).weights(32)
    assert weights[:33] == [-1.0] * 33
    assert weights[33:] == [1.0] * 67


@pytest.mark.parametrize("kind", ["digits", "whole"])
def test_metric_is_the_signed_mass_on_later_years(kind, tokenizer, whole_number_tokenizer):
    tok = tokenizer if kind == "digits" else whole_number_tokenizer
    task = GreaterThanTask()
    examples = task.generate(4, random.Random(0), tok)
    batch = task.encode(examples, tok)
    scheme = year_scheme(tok, PREFIX)
    for row, ex in enumerate(examples):
        yy = start_year(ex.clean)
        one = batch.select(torch.tensor([row]))
        for candidate, token in enumerate(scheme.ids):
            logits = torch.full((1, len(tok)), -1e4)
            logits[0, token] = 1e4  # all probability on one candidate token
            # The end years that candidate token starts, each counted +1 if later
            # than 17YY and -1 if not, averaged.
            years = [candidate] if kind == "whole" else [10 * candidate + u for u in range(10)]
            expected = sum(1.0 if y > yy else -1.0 for y in years) / len(years)
            assert float(task.metric(logits, one)[0]) == pytest.approx(expected)


def test_generated_prompts_use_start_year_1701_for_the_corruption(tokenizer):
    for ex in GreaterThanTask().generate(16, random.Random(1), tokenizer):
        assert 2 <= start_year(ex.clean) <= 98
        assert start_year(ex.corrupted) == 1
        assert ex.clean.endswith("year 17") and ex.corrupted.endswith("year 17")


def test_metric_without_the_year_extras_says_how_to_encode(tokenizer):
    from nodeprune.prompts import encode_examples

    task = GreaterThanTask()
    batch = encode_examples(task.generate(2, random.Random(0), tokenizer), tokenizer)
    with pytest.raises(NodepruneError, match="task.encode"):
        task.metric(torch.zeros(2, len(tokenizer)), batch)
