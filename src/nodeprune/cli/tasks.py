"""``nodeprune tasks``: the built-in tasks, each with an example prompt pair."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import NodepruneError

TASKS_HELP = "list the built-in tasks"


def cmd_tasks(args: argparse.Namespace) -> int:
    import random

    from ..tasks import TASKS
    from ..tasks.vocab import WhitespaceTokenizer

    try:
        tokenizer, source = _default_tokenizer(), "the SmolLM2-135M tokenizer"
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


def _default_tokenizer() -> object:
    """The default model's tokenizer: its cached tokenizer.json read directly (no
    transformers or torch to import), else loaded the usual way (which fills the cache)."""
    from ..builtin_models import BUILTIN_MODELS, cached_copy, dequantised_folder
    from ..tasks.vocab import FileTokenizer

    folder = dequantised_folder(BUILTIN_MODELS["smollm2-135m"].gguf())
    if cached_copy(folder) and (folder / "tokenizer.json").is_file():
        return FileTokenizer(str(folder / "tokenizer.json"))
    from ..models import load_tokenizer

    return load_tokenizer()


def add_tasks_parser(sub: Any) -> None:
    p = sub.add_parser("tasks", help=TASKS_HELP)
    p.set_defaults(func=cmd_tasks)
