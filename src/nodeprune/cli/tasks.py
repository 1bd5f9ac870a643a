"""``nodeprune tasks``: the built-in tasks, each with an example prompt pair."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import NodepruneError

TASKS_HELP = "list the built-in tasks"


def cmd_tasks(args: argparse.Namespace) -> int:
    import random

    from ..models import load_tokenizer
    from ..tasks import TASKS
    from ..tasks.vocab import WhitespaceTokenizer

    try:
        tokenizer, source = load_tokenizer(), "the SmolLM2-135M tokenizer"
    except NodepruneError:
        tokenizer, source = WhitespaceTokenizer(), "a whitespace tokenizer (SmolLM2 not installed)"
    print(f"Built-in tasks; example prompt pairs drawn with {source}.\n")
    pad = " " * 18
    for name, cls in TASKS.items():
        task = cls()
        print(f"{name:<18}{task.description}")
        try:
            ex = task.generate(1, random.Random(0), tokenizer)[0]
        except NodepruneError as exc:
            print(f"{pad}(no example for this tokenizer: {exc})")
            continue
        print(f"{pad}clean:     {ex.clean!r} -> {ex.answer!r} (distractor {ex.distractor!r})")
        print(f"{pad}corrupted: {ex.corrupted!r}")
    print(
        f"{'custom':<18}your own prompt pairs: nodeprune discover --task-file FILE "
        "(nodeprune or Edge Pruning JSONL, or auto-circuit JSON; see README, Tasks)"
    )
    return 0


def add_tasks_parser(sub: Any) -> None:
    p = sub.add_parser("tasks", help=TASKS_HELP)
    p.set_defaults(func=cmd_tasks)
