"""Gendered pronoun (Mathwin et al. 2023): "So Mary is a really great friend, isn't" -> " she".

Clean prompt: a template with one name; the answer is the subject pronoun of the
name's gender (" he" / " she"), the distractor the other one. Corrupted prompt: the
same template with a name of the other gender, so the pronoun signal is reversed.
Names are drawn only from those that are one token (with their leading space), so the
two prompts have the same token length.
"""

from __future__ import annotations

import random

from ..errors import NodepruneError
from .base import Example, Task
from .vocab import require_words, single_token_words

# The name is never the first word: at the start of a text it would have no leading
# space and could tokenize differently from the mid-sentence form we check.
TEMPLATES = (
    "So {NAME} is a really great friend, isn't",
    "Today {NAME} was late for work because",
    "After {NAME} finished the long race,",
    "Then {NAME} looked at the old map, and",
    "Sadly {NAME} could not find the keys, so",
    "When {NAME} got home from the office,",
    "Later {NAME} called the school and said that",
    "Yesterday {NAME} went to the park, where",
    "Of course {NAME} wanted to win the game, so",
    "Before {NAME} left the house,",
)
MALE_NAMES = (
    "John Bob Tom James Michael David Daniel Paul Mark Kevin Peter Steven Andrew Joseph "
    "Thomas Robert William Richard Charles George Edward Henry Jack Sam Ben Max Adam Eric "
    "Ryan Jason Brian Frank Scott Anthony Patrick"
).split()
FEMALE_NAMES = (
    "Mary Alice Sarah Emma Jessica Laura Lisa Anna Rachel Kate Amy Susan Linda Karen Helen "
    "Nancy Betty Emily Grace Rose Jane Lucy Sophie Julia Maria Olivia Hannah Megan Ruth"
).split()
PRONOUNS = {"male": " he", "female": " she"}


class GenderedPronounTask(Task):
    name = "gendered_pronoun"
    description = "gendered pronoun: 'So Mary is a really great friend, isn't' -> she (not he)"
    corruption = "the name is replaced by a name of the other gender"

    def generate(self, n: int, rng: random.Random, tokenizer: object) -> list[Example]:
        missing = [p for p in PRONOUNS.values() if not single_token_words(tokenizer, [p[1:]])]
        if missing:
            raise NodepruneError(
                f"task 'gendered_pronoun': {missing} is not a single token for this "
                "tokenizer; use a task file instead"
            )
        names = {
            "male": require_words(tokenizer, MALE_NAMES, 2, "male names", self.name),
            "female": require_words(tokenizer, FEMALE_NAMES, 2, "female names", self.name),
        }
        examples = []
        for _ in range(n):
            template = rng.choice(TEMPLATES)
            gender, other = rng.choice((("male", "female"), ("female", "male")))
            name, swapped = rng.choice(names[gender]), rng.choice(names[other])
            examples.append(
                Example(
                    clean=template.format(NAME=name),
                    corrupted=template.format(NAME=swapped),
                    answer=PRONOUNS[gender],
                    distractor=PRONOUNS[other],
                )
            )
        return examples
