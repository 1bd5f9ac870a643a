'''Docstring (Heimersheim & Janiak 2023): predict the next parameter name in a docstring.

Clean prompt (indentation as in the source)::

    def fetch(self, path, size, mode, limit):
        """river stone cloud

        :param path: candle pocket
        :param size: engine winter
        :param

The answer is the next undocumented argument, " mode"; the distractor is the argument
after it, " limit", so the model has to follow the order of the signature rather than
copy any argument name. Corrupted prompt: the arguments in the signature are renamed to
other random names (the docstring is unchanged), so the signature no longer says which
name comes next. All argument names are one token with their leading space, so the two
prompts have the same token length.
'''

from __future__ import annotations

import random

from .base import Example, Task
from .induction import WORDS
from .vocab import require_words

FUNCTION_NAMES = "fetch load update parse render build create check send apply".split()
ARG_NAMES = (
    "path size mode name value key data items count index start end file text line user "
    "color width height speed date time type flag level limit order price rate score state "
    "step table title token unit url weight source target config options message result "
    "field label query parent child node image model format prefix suffix"
).split()
N_DOCUMENTED = (1, 2, 3)  # parameters already documented before the one to predict


class DocstringTask(Task):
    name = "docstring"
    description = "docstring: 'def f(self, path, size, mode): ... :param path: ... :param' -> size"
    corruption = (
        "the arguments in the signature are renamed to other random names; the docstring "
        "is unchanged"
    )

    def generate(self, n: int, rng: random.Random, tokenizer: object) -> list[Example]:
        # Clean and corrupted signatures together use 2 * (documented + 2) distinct names.
        need = 2 * (max(N_DOCUMENTED) + 2)
        names = require_words(tokenizer, ARG_NAMES, need, "argument names", self.name)
        words = require_words(tokenizer, WORDS, 3, "description words", self.name)
        examples = []
        for _ in range(n):
            documented = rng.choice(N_DOCUMENTED)
            n_args = documented + 2
            drawn = rng.sample(names, 2 * n_args)
            args, renamed = drawn[:n_args], drawn[n_args:]
            body = _docstring(rng, words, args[:documented])
            function = rng.choice(FUNCTION_NAMES)
            examples.append(
                Example(
                    clean=_signature(function, args) + body,
                    corrupted=_signature(function, renamed) + body,
                    answer=" " + args[documented],
                    distractor=" " + args[documented + 1],
                )
            )
        return examples


def _signature(function: str, args: list[str]) -> str:
    return f"def {function}(self, {', '.join(args)}):\n"


def _docstring(rng: random.Random, words: list[str], documented: list[str]) -> str:
    # Descriptions are random single-token words, as in Heimersheim & Janiak.
    lines = [f'    """{" ".join(rng.sample(words, 3))}', ""]
    lines += [f"    :param {a}:{_join(rng.sample(words, 2))}" for a in documented]
    return "\n".join(lines) + "\n    :param"


def _join(words: list[str]) -> str:
    return "".join(" " + w for w in words)
