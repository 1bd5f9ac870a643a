"""Greater-than (Hanna et al. 2023): "The war lasted from the year 1732 to the year 17".

Clean prompt: a start year 17YY (YY from 02 to 98) and an end year cut after "17".
Corrupted prompt: the same sentence with start year 1701, which carries no information
about which end years are possible. The metric is probability mass, not a logit
difference: **P(end year > 17YY) - P(end year <= 17YY)** at the last position.

What "the end year" means depends on what the tokenizer predicts next:

* **Whole-number tokenizers** (GPT-2 style: "1732" -> "17", "32"): the next token is
  the two-digit year "00" ... "99". The metric is the mass on the tokens of YY+1 ... 99
  minus the mass on 00 ... YY, exactly as in Hanna et al.
* **Digit tokenizers** (SmolLM2, Llama 3: "1732" -> "1", "7", "3", "2"): the next token
  is the *tens digit* t of the end year; the units digit only comes one step later. With
  YY = 10a + b, decades t > a hold only later years and decades t < a only earlier or
  equal ones, so their mass counts +1 and -1. The start decade t = a holds both: of its
  ten years a0 ... a9, 9 - b are later than YY and b + 1 are not, so its mass counts
  ((9 - b) - (b + 1)) / 10 -- the metric the model would get if the units digit that
  follows were uniform. Only that one decade is approximated; the rest is exact.

``answer``/``distractor`` (used only where a plain logit difference is wanted) are the
first predicted token of year YY+1 and of YY in whole-number mode, and the tens digits
of the next and of the previous decade (clamped to 0-9) in digit mode.
Tokenizers that write two-digit years neither way are rejected with a clear error.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are made: listing tasks and
    # checking a task name need none
    from torch import Tensor

from ..errors import NodepruneError
from ..prompts import PromptBatch
from .base import Example, Task
from .vocab import same_length

TEMPLATES = (
    "The {NOUN} lasted from the year 17{YY} to the year 17",
    "The {NOUN} went on from the year 17{YY} to the year 17",
    "The {NOUN} ran from the year 17{YY} until the year 17",
)
# Context words, identical in the clean and corrupted prompt, so they need not be
# single tokens.
NOUNS = (
    "war expedition project construction campaign voyage journey siege reign occupation "
    "drought famine rebellion revolution conflict dispute trial partnership friendship "
    "tradition festival exhibition alliance empire dynasty marriage investigation study"
).split()
CORRUPTED_YY = 1
YEARS = range(2, 99)
_START_YEAR = re.compile(r"17(\d\d)")


@dataclass(frozen=True)
class YearScheme:
    """How a tokenizer writes the two digits after "17": ``whole`` (one token per
    two-digit number, ``ids[YY]``) or ``digits`` (``ids[t]`` is the digit t)."""

    kind: str
    ids: tuple[int, ...]

    def weights(self, yy: int) -> list[float]:
        """+1 / -1 per candidate token (greater / up to YY); see the module docstring."""
        if self.kind == "whole":
            return [1.0 if year > yy else -1.0 for year in range(100)]
        tens, units = divmod(yy, 10)
        same_decade = ((9 - units) - (units + 1)) / 10
        return [1.0 if t > tens else -1.0 if t < tens else same_decade for t in range(10)]

    def answer_ids(self, yy: int) -> tuple[int, int]:
        if self.kind == "whole":
            return self.ids[yy + 1], self.ids[yy]
        tens = yy // 10
        return self.ids[min(tens + 1, 9)], self.ids[max(tens - 1, 0)]


def year_scheme(tokenizer: object, prefix: str) -> YearScheme:
    """Find out how ``tokenizer`` continues ``prefix`` (ending in "17") with 00 ... 99."""
    base = tokenizer.encode(prefix)
    rests = []
    for yy in range(100):
        ids = tokenizer.encode(f"{prefix}{yy:02d}")
        rests.append(ids[len(base) :] if ids[: len(base)] == base else [])
    if all(len(r) == 1 for r in rests) and len({r[0] for r in rests}) == 100:
        return YearScheme("whole", tuple(r[0] for r in rests))
    if all(len(r) == 2 for r in rests):
        tens = [{r[0] for r in rests[10 * t : 10 * t + 10]} for t in range(10)]
        units = [{r[1] for r in rests[u::10]} for u in range(10)]
        digit_ids = [next(iter(s)) for s in tens]
        if (
            all(len(s) == 1 for s in tens + units)
            and len(set(digit_ids)) == 10
            and [next(iter(s)) for s in units] == digit_ids
        ):
            return YearScheme("digits", tuple(digit_ids))
    raise NodepruneError(
        "task 'greater_than' needs a tokenizer that writes two-digit years either as one "
        "token each (GPT-2 style) or digit by digit (SmolLM2 style); this one does neither "
        "consistently (use a task file instead)"
    )


def start_year(prompt: str) -> int:
    match = _START_YEAR.search(prompt)
    if match is None:
        raise NodepruneError(f"greater_than: no start year 17YY in prompt {prompt!r}")
    return int(match.group(1))


class GreaterThanTask(Task):
    name = "greater_than"
    description = (
        "greater-than: 'The war lasted from the year 1732 to the year 17' -> a later year "
        "(metric P(greater) - P(<= YY))"
    )
    corruption = "the start year is replaced by 1701, which says nothing about the end year"
    metric_label = "P(later) - P(not later)"

    def generate(self, n: int, rng: random.Random, tokenizer: object) -> list[Example]:
        scheme = year_scheme(tokenizer, TEMPLATES[0].format(NOUN=NOUNS[0], YY="50"))
        examples: list[Example] = []
        for _ in range(50 * max(n, 1)):
            if len(examples) == n:
                break
            template = rng.choice(TEMPLATES)
            noun, yy = rng.choice(NOUNS), rng.choice(YEARS)
            clean = template.format(NOUN=noun, YY=f"{yy:02d}")
            corrupted = template.format(NOUN=noun, YY=f"{CORRUPTED_YY:02d}")
            if not same_length(tokenizer, clean, corrupted):
                continue  # this tokenizer merges the start year differently
            answer, distractor = scheme.answer_ids(yy)
            answer_text, distractor_text = (
                tokenizer.decode([answer]),
                tokenizer.decode([distractor]),
            )
            examples.append(Example(clean, corrupted, answer_text, distractor_text))
        if len(examples) < n:
            raise NodepruneError(
                "task 'greater_than': the clean and corrupted start years tokenize to "
                "different lengths for this tokenizer; use a task file instead"
            )
        return examples

    def extras(self, examples: list[Example], tokenizer: object) -> dict[str, Tensor]:
        import torch

        scheme = year_scheme(tokenizer, TEMPLATES[0].format(NOUN=NOUNS[0], YY="50"))
        years = [start_year(e.clean) for e in examples]
        ids = torch.tensor([scheme.ids] * len(examples), dtype=torch.long)
        weights = torch.tensor([scheme.weights(yy) for yy in years], dtype=torch.float32)
        return {"year_ids": ids, "year_weights": weights}

    def metric(self, logits: Tensor, batch: PromptBatch) -> Tensor:
        import torch

        if "year_ids" not in batch.extras:
            raise NodepruneError(
                "greater_than batches need their year extras: encode them with "
                "task.encode(examples, tokenizer), not data.encode_examples"
            )
        probs = torch.softmax(logits.float(), -1)
        ids = batch.extras["year_ids"].to(logits.device)
        weights = batch.extras["year_weights"].to(logits.device)
        return (probs.gather(1, ids) * weights).sum(1)
