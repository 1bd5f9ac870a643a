"""Subject-verb agreement with an attractor: "The key to the cabinets" -> " is" (not " are").

Clean prompt: "The SUBJECT PREP the ATTRACTOR" where the attractor noun has the other
grammatical number than the subject; the answer is the verb form that agrees with the
subject (" is" / " was" for a singular subject, " are" / " were" for a plural one), the
distractor the other form. Corrupted prompt: the subject switched to its other number
("The keys to the cabinets"), which flips the verb the model should pick. Only nouns
whose singular and plural are both one token are drawn, so the prompts stay aligned.
"""

from __future__ import annotations

import random

from ..errors import NodepruneError
from .base import Example, Task
from .vocab import single_token_words

TEMPLATES = (
    "The {SUBJ} {PREP} the {ATTR}",
    "I think the {SUBJ} {PREP} the {ATTR}",
    "Everyone knows that the {SUBJ} {PREP} the {ATTR}",
)
PREPOSITIONS = ("to", "near", "behind", "next to", "in front of", "of", "on", "with", "beside")
# (singular, plural)
NOUNS = tuple(
    tuple(pair.split("/"))
    for pair in (
        "key/keys cabinet/cabinets book/books table/tables door/doors friend/friends "
        "teacher/teachers student/students car/cars house/houses dog/dogs cat/cats "
        "box/boxes bird/birds tree/trees window/windows letter/letters picture/pictures "
        "girl/girls boy/boys author/authors manager/managers doctor/doctors "
        "lawyer/lawyers painting/paintings room/rooms farmer/farmers officer/officers "
        "player/players road/roads"
    ).split()
)
# (singular verb, plural verb)
VERBS = (("is", "are"), ("was", "were"))


class SVATask(Task):
    name = "sva"
    description = "subject-verb agreement: 'The key to the cabinets' -> is (not are)"
    corruption = "the subject noun is switched to its other number (key -> keys)"

    def generate(self, n: int, rng: random.Random, tokenizer: object) -> list[Example]:
        nouns = [(s, p) for s, p in NOUNS if len(single_token_words(tokenizer, [s, p])) == 2]
        verbs = [(s, p) for s, p in VERBS if len(single_token_words(tokenizer, [s, p])) == 2]
        if len(nouns) < 2 or not verbs:
            raise NodepruneError(
                f"task 'sva': this tokenizer writes only {len(nouns)} noun pairs and "
                f"{len(verbs)} verb pairs as single tokens (needs 2 and 1); use a task file"
            )
        examples = []
        for _ in range(n):
            template = rng.choice(TEMPLATES)
            subject, attractor = rng.sample(nouns, 2)
            plural = rng.random() < 0.5  # the subject's number
            verb = rng.choice(verbs)
            slots = {"PREP": rng.choice(PREPOSITIONS), "ATTR": attractor[0 if plural else 1]}
            examples.append(
                Example(
                    clean=template.format(SUBJ=subject[plural], **slots),
                    corrupted=template.format(SUBJ=subject[not plural], **slots),
                    answer=" " + verb[plural],
                    distractor=" " + verb[not plural],
                )
            )
        return examples
