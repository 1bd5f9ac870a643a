"""Indirect object identification (Wang et al. 2022), generated from built-in templates."""

from __future__ import annotations

import random

from ..errors import NodepruneError
from .base import Example, Task
from .vocab import single_token_words

# {A} is the indirect object (the answer), {B} the subject (named twice, the distractor).
TEMPLATES_ABBA = (
    "When {A} and {B} went to the {PLACE}, {B} gave a {OBJECT} to",
    "When {A} and {B} got a {OBJECT} at the {PLACE}, {B} decided to give it to",
    "After {A} and {B} went to the {PLACE}, {B} gave a {OBJECT} to",
    "While {A} and {B} were working at the {PLACE}, {B} gave a {OBJECT} to",
    "Then, {A} and {B} went to the {PLACE}. {B} gave a {OBJECT} to",
    "Then, {A} and {B} had a lot of fun at the {PLACE}. {B} gave a {OBJECT} to",
    "Friends {A} and {B} found a {OBJECT} at the {PLACE}. {B} gave it to",
    "The {PLACE} was quiet when {A} and {B} arrived. {B} handed the {OBJECT} to",
    "Afterwards, {A} and {B} went to the {PLACE}. {B} brought a {OBJECT} to",
    "When {A} and {B} arrived at the {PLACE}, {B} passed the {OBJECT} to",
    "Yesterday {A} and {B} were at the {PLACE}, and {B} gave a {OBJECT} to",
    "As {A} and {B} walked to the {PLACE}, {B} offered a {OBJECT} to",
)
# The same sentences with the first two names swapped (BABA order).
TEMPLATES_BABA = tuple(t.replace("{A} and {B}", "{B} and {A}", 1) for t in TEMPLATES_ABBA)

NAMES = (
    "Mary John Alice Bob Tom James Michael David Sarah Emma Daniel Paul Mark Kevin Jessica "
    "Laura Lisa Anna Rachel Peter Steven Andrew Joseph Thomas Robert William Richard Charles "
    "Chris George Edward Henry Jack Sam Ben Max Kate Amy Susan Linda Karen Helen Nancy Betty "
    "Emily Grace Rose Jane Lucy Adam Eric Ryan Jason Brian Frank Scott Anthony Patrick Sophie"
).split()
PLACES = (
    "store garden restaurant school hospital office station market park house beach "
    "library kitchen museum church"
).split()
OBJECTS = "drink book ring bone kiss basketball computer necklace snack apple bottle ball".split()


class IOITask(Task):
    name = "ioi"
    description = (
        "indirect object identification: 'When Mary and John ..., John gave it to' -> Mary"
    )
    corruption = (
        "the three name slots are filled with three other distinct names (the 'ABC' "
        "distribution), so the prompt carries no indirect-object signal"
    )

    def generate(self, n: int, rng: random.Random, tokenizer: object) -> list[Example]:
        names = single_token_words(tokenizer, NAMES)
        if len(names) < 5:
            raise NodepruneError(
                f"only {len(names)} of the IOI names are single tokens for this tokenizer; "
                "IOI needs at least 5 (use a task file with names that fit the tokenizer)"
            )
        templates = TEMPLATES_ABBA + TEMPLATES_BABA
        examples = []
        for _ in range(n):
            template = rng.choice(templates)
            a, b, c, d, e = rng.sample(names, 5)
            slots = {"PLACE": rng.choice(PLACES), "OBJECT": rng.choice(OBJECTS)}
            examples.append(
                Example(
                    clean=template.format(A=a, B=b, **slots),
                    # Names are placed per occurrence so the corrupted prompt holds
                    # three distinct names in the three slots.
                    corrupted=_fill_names(template, (c, d, e), slots),
                    answer=" " + a,
                    distractor=" " + b,
                )
            )
        return examples


def _fill_names(template: str, names: tuple[str, str, str], slots: dict[str, str]) -> str:
    out = template
    for name in names:
        first_a, first_b = out.find("{A}"), out.find("{B}")
        positions = [p for p in (first_a, first_b) if p >= 0]
        at = min(positions)
        out = out[:at] + name + out[at + 3 :]
    return out.format(**slots)
