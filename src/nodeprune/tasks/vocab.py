"""Word lists filtered to what a tokenizer writes as one token."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import NodepruneError
from ..prompts import single_token_id


def single_token_words(tokenizer: object, words: Sequence[str]) -> list[str]:
    """The words that are one token with a leading space, as they appear mid-sentence."""
    return [w for w in words if single_token_id(tokenizer, " " + w) is not None]


def require_words(
    tokenizer: object, words: Sequence[str], need: int, what: str, task: str
) -> list[str]:
    """:func:`single_token_words`, or a NodepruneError when fewer than ``need`` remain."""
    found = single_token_words(tokenizer, words)
    if len(found) < need:
        raise NodepruneError(
            f"task {task!r}: only {len(found)} of its {len(words)} {what} are single tokens "
            f"for this tokenizer and it needs {need}; use a task file (--task-file) with "
            "words that fit the tokenizer"
        )
    return found


def same_length(tokenizer: object, clean: str, corrupted: str) -> bool:
    """Whether two prompts tokenize to the same number of tokens (needed for alignment)."""
    return len(tokenizer.encode(clean)) == len(tokenizer.encode(corrupted))


class WhitespaceTokenizer:
    """A stand-in tokenizer for showing example prompts without any model files: each
    word with its leading space, each digit and each other character is one token."""

    pad_token_id = 0
    _PIECE = re.compile(r" ?[^\W\d_]+| ?\d|.", re.S)

    def __init__(self) -> None:
        self._pieces: list[str] = ["<pad>"]
        self._ids: dict[str, int] = {}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [self._id(piece) for piece in self._PIECE.findall(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self._pieces[i] for i in ids)

    def _id(self, piece: str) -> int:
        if piece not in self._ids:
            self._ids[piece] = len(self._pieces)
            self._pieces.append(piece)
        return self._ids[piece]


class FileTokenizer:
    """A tokenizer.json read with the ``tokenizers`` library alone (no transformers, no
    torch): the same pieces as the model's fast tokenizer, for showing example prompts."""

    def __init__(self, path: str) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(path)
        self.pad_token_id = 0

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=False)
