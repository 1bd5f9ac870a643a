"""Induction: a random sequence of words, then its start again -> the word that came next.

Clean prompt: " w1 w2 ... wL w1 ... wk" with L distinct random single-token words
(L from 6 to 10) and 2 <= k < L; the answer is w(k+1), the token that followed wk last
time. The distractor is another word of the first run (neither the answer nor wk), so
the metric asks for the *right* earlier token, not just any copied one.
Corrupted prompt: the first run replaced by L other random words, so nothing earlier in
the prompt says what follows wk; the second run is unchanged. Every word is one token
with its leading space, so both prompts have the same token length.
"""

from __future__ import annotations

import random

from .base import Example, Task
from .ioi import NAMES
from .vocab import require_words

# Common words and first names; any single-token subset works, the sequences are random.
WORDS = (
    "apple river stone cloud garden window paper music silver forest candle pocket "
    "engine market winter summer mountain island bridge castle dragon rocket planet "
    "orange yellow purple green blue red black white bright quiet happy simple "
    "table chair bottle basket button carpet jacket ladder mirror needle pencil "
    "pillow ribbon saddle ticket tunnel wallet hammer helmet kettle lemon monkey "
    "rabbit tiger horse sheep whale eagle spider turtle violin guitar piano drum "
    "coffee butter bread cheese sugar salt pepper honey water fire earth metal glass "
    "wood sand snow rain storm wind light shadow dream story letter number circle "
    "square corner border signal energy power money office school church hotel "
    "doctor farmer driver king queen prince soldier sailor artist writer "
    "store garden restaurant hospital station park house beach library kitchen museum "
    "drink book ring bone computer necklace snack ball"
).split() + list(NAMES)
MIN_LEN, MAX_LEN = 6, 10


class InductionTask(Task):
    name = "induction"
    description = "induction: ' apple river stone cloud apple river' -> stone"
    corruption = (
        "the first run of words is replaced by other random words, so the repeated "
        "prefix has no earlier occurrence to copy from"
    )

    def generate(self, n: int, rng: random.Random, tokenizer: object) -> list[Example]:
        words = require_words(tokenizer, WORDS, 2 * MAX_LEN, "words", self.name)
        examples = []
        for _ in range(n):
            length = rng.randint(MIN_LEN, MAX_LEN)
            drawn = rng.sample(words, 2 * length)
            run, other = drawn[:length], drawn[length:]
            k = rng.randint(2, length - 1)
            repeat = run[:k]
            candidates = [w for i, w in enumerate(run) if i not in (k - 1, k)]
            examples.append(
                Example(
                    clean=_join(run + repeat),
                    corrupted=_join(other + repeat),
                    answer=" " + run[k],
                    distractor=" " + rng.choice(candidates),
                )
            )
        return examples


def _join(words: list[str]) -> str:
    return "".join(" " + w for w in words)
