"""Every built-in generator: deterministic under its seed, valid for the in-process BPE
tokenizer and for a whitespace stand-in, with the corruption each task documents."""

from __future__ import annotations

import random
import re

import pytest

from nodeprune.errors import NodepruneError
from nodeprune.prompts import single_token_id
from nodeprune.tasks import TASKS, get_task
from nodeprune.tasks.docstring import ARG_NAMES
from nodeprune.tasks.gendered_pronoun import FEMALE_NAMES, MALE_NAMES
from nodeprune.tasks.sva import NOUNS
from nodeprune.tasks.vocab import WhitespaceTokenizer

N = 24


@pytest.fixture(params=["bpe", "whitespace"])
def any_tokenizer(request, tokenizer):
    return tokenizer if request.param == "bpe" else WhitespaceTokenizer()


@pytest.mark.parametrize("name", list(TASKS))
def test_same_seed_same_examples_other_seed_other_examples(name, tokenizer):
    task = get_task(name)
    first = task.generate_split("train", N, 3, tokenizer)
    assert first == task.generate_split("train", N, 3, tokenizer)
    assert first != task.generate_split("train", N, 4, tokenizer)
    assert first != task.generate_split("test", N, 3, tokenizer)


@pytest.mark.parametrize("name", list(TASKS))
def test_examples_are_valid_for_the_tokenizer(name, any_tokenizer):
    task = get_task(name)
    examples = task.generate(N, random.Random(0), any_tokenizer)
    assert len(examples) == N
    for ex in examples:
        assert ex.clean != ex.corrupted
        assert ex.answer != ex.distractor
        assert single_token_id(any_tokenizer, ex.answer) is not None
        assert single_token_id(any_tokenizer, ex.distractor) is not None
        assert len(any_tokenizer.encode(ex.clean)) == len(any_tokenizer.encode(ex.corrupted))
    batch = task.encode(examples, any_tokenizer)
    assert len(batch) == N
    lengths = batch.attention_mask.sum(1)
    assert (batch.answer_pos == lengths - 1).all()


def test_task_names_accept_hyphens_and_suggest_the_closest():
    assert get_task("greater-than").name == "greater_than"
    with pytest.raises(NodepruneError, match="did you mean 'greater_than'"):
        get_task("greater_thn")


def _word_after(text: str, word: str) -> str:
    return text.split(word, 1)[1].split()[0]


def test_gendered_pronoun_answer_matches_the_name_and_corruption_swaps_gender(tokenizer):
    pronoun = {**{n: " he" for n in MALE_NAMES}, **{n: " she" for n in FEMALE_NAMES}}
    for ex in get_task("gendered_pronoun").generate(N, random.Random(1), tokenizer):
        clean_name = next(w.strip(",") for w in ex.clean.split() if w.strip(",") in pronoun)
        corrupted_name = next(w.strip(",") for w in ex.corrupted.split() if w.strip(",") in pronoun)
        assert pronoun[clean_name] == ex.answer
        assert pronoun[corrupted_name] == ex.distractor


def test_sva_answer_agrees_with_the_subject_and_corruption_flips_its_number(tokenizer):
    singular = {s for s, _ in NOUNS}
    plural = {p for _, p in NOUNS}
    for ex in get_task("sva").generate(N, random.Random(2), tokenizer):
        subject = _word_after(ex.clean.lower(), "the ")
        corrupted_subject = _word_after(ex.corrupted.lower(), "the ")
        attractor = ex.clean.split()[-1]
        assert (subject in plural) == (ex.answer in (" are", " were"))
        assert (subject in singular) == (corrupted_subject in plural)
        assert (attractor in plural) != (subject in plural)  # the attractor disagrees


def test_induction_answer_is_the_token_that_followed_last_time(tokenizer):
    for ex in get_task("induction").generate(N, random.Random(3), tokenizer):
        words = ex.clean.split()
        last = words[-1]
        first_run = words[: words.index(last) + 1]
        assert words.index(last) < len(words) - 1  # the last word occurred before
        assert ex.answer == " " + words[len(first_run)]
        corrupted = ex.corrupted.split()
        repeat = len(words) - words.index(words[0], 1)
        assert corrupted[-repeat:] == words[-repeat:]
        assert ex.answer.strip() not in corrupted  # nothing to copy from


def test_docstring_answer_is_the_next_argument_and_corruption_renames_them(tokenizer):
    for ex in get_task("docstring").generate(N, random.Random(4), tokenizer):
        signature = ex.clean.split("(self, ", 1)[1].split(")", 1)[0].split(", ")
        documented = [
            line.split()[1].rstrip(":")
            for line in ex.clean.splitlines()
            if line.strip().startswith(":param ")
        ]
        assert signature[: len(documented)] == documented
        assert ex.answer == " " + signature[len(documented)]
        assert ex.distractor == " " + signature[len(documented) + 1]
        renamed = ex.corrupted.split("(self, ", 1)[1].split(")", 1)[0].split(", ")
        assert not set(renamed) & set(signature)
        assert set(renamed) <= set(ARG_NAMES)
        assert ex.corrupted.split("\n", 1)[1] == ex.clean.split("\n", 1)[1]


def test_ioi_corruption_uses_three_other_distinct_names(tokenizer):
    for ex in get_task("ioi").generate(N, random.Random(5), tokenizer):
        assert ex.answer.strip() not in ex.corrupted.split()
        assert ex.distractor.strip() not in ex.corrupted.replace(",", " ").split()


def test_a_tokenizer_without_the_needed_single_tokens_is_rejected_clearly():
    class CharTokenizer(WhitespaceTokenizer):
        _PIECE = re.compile(r".", re.S)  # one token per character

    for name in ("gendered_pronoun", "sva", "induction", "docstring", "ioi"):
        with pytest.raises(NodepruneError, match="single token|task file"):
            get_task(name).generate(4, random.Random(0), CharTokenizer())
