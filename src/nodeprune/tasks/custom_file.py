"""Reading prompt-pair files: nodeprune JSONL, auto-circuit JSON and Edge Pruning JSONL.

* **nodeprune JSONL** -- one JSON object per line:
  ``{"clean": ..., "corrupted": ..., "answer": ..., "distractor": ...}`` (strings),
  optionally ``"split": "train" | "validation" | "test"``. Blank lines are skipped.
* **auto-circuit** -- one JSON document ``{"prompts": [{"clean": ..., "corrupt": ...,
  "answers": [...], "wrong_answers": [...]}, ...]}``; ``answers`` / ``wrong_answers``
  may hold several strings each (the metric is then the mean logit of the answers minus
  the mean logit of the wrong answers, as auto-circuit's logit difference).
* **Edge Pruning JSONL** -- one object per line with the predicted part marked:
  ``{"clean": "1 + 2 = <predict>3</predict>", "corrupted": "1 + 4 = <predict>5</predict>"}``,
  optionally ``"split"``. The prompt is the text before ``<predict>``, the answer the
  marked text (text after ``</predict>`` is ignored); the distractor is the corrupted
  prompt's marked text, or a ``"distractor"`` field. Whitespace at the end of a prompt
  is moved to the front of its answer (``"1 + 2 = "`` + ``"3"`` -> ``"1 + 2 ="`` +
  ``" 3"``), which is how the text tokenizes when written out.

Every problem (missing file, bytes that are not UTF-8, malformed or too deeply nested
JSON, a missing, non-string, empty or overlong field, an unknown split) is a one-line
NodepruneError naming the file and line. Prompts longer than the model takes are refused
when the records meet the tokenizer (tasks/custom.py), before any tensor is built.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import NodepruneError
from ..suggest import closest

SPLIT_NAMES = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
PREDICT_OPEN, PREDICT_CLOSE = "<predict>", "</predict>"
NATIVE_FIELDS = ("clean", "corrupted", "answer", "distractor")
AUTO_CIRCUIT_FIELDS = ("clean", "corrupt", "answers", "wrong_answers")
#: Longest text field read, in characters. Far above any model's context in tokens (the
#: tokenizer check refuses what the model cannot take), it keeps a megabyte line from
#: being tokenized at all.
MAX_TEXT_CHARS = 100_000
#: What json raises besides JSONDecodeError (a ValueError): RecursionError for nesting
#: thousands deep, ValueError for an integer of more than 4300 digits.
_JSON_ERRORS = (ValueError, RecursionError)


@dataclass(frozen=True)
class Record:
    """One prompt pair as read from a file, before tokenization."""

    where: str  # "file:line", for error messages
    clean: str
    corrupted: str
    answers: tuple[str, ...]
    distractors: tuple[str, ...]
    split: str | None = None


def load_records(path: str | Path) -> tuple[str, list[Record]]:
    """The file's format name and its records, in file order."""
    p = Path(path)
    if not p.exists():
        raise NodepruneError(f"task file {p} does not exist")
    if not p.is_file():
        raise NodepruneError(f"task file {p} is not a file")
    lines = _decode_lines(p, p.read_bytes())
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise NodepruneError(f"{p}: the task file is empty; put one JSON object per line")
    first_line, first = numbered[0]
    try:
        head = json.loads(first)
    except json.JSONDecodeError:
        head = None  # not a complete object on one line: a whole JSON document
    except _JSON_ERRORS:
        head = {}  # a complete line json cannot read: the line parser says which and why
    if head is not None and not (isinstance(head, dict) and "prompts" in head):
        records = [_jsonl_record(p, n, line) for n, line in numbered]
        kinds = {"edge-pruning" if PREDICT_OPEN in r.clean_raw else "nodeprune" for r in records}
        return "+".join(sorted(kinds)), [r.record for r in records]
    return "auto-circuit", _auto_circuit_records(p, "\n".join(lines))


def _decode_lines(path: Path, raw: bytes) -> list[str]:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte-order mark
    lines = []
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            lines.append(chunk.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as exc:
            raise NodepruneError(
                f"{path}:{number}: not valid UTF-8 (byte 0x{chunk[exc.start]:02x} at column "
                f"{exc.start + 1}); save the file as UTF-8"
            ) from None
    return lines


@dataclass(frozen=True)
class _Parsed:
    record: Record
    clean_raw: str


def _jsonl_record(path: Path, number: int, line: str) -> _Parsed:
    where = f"{path}:{number}"
    try:
        obj = json.loads(line)
    except _JSON_ERRORS as exc:
        problem = _json_problem(exc)
        raise NodepruneError(f"{where}: {problem}; write one JSON object per line") from None
    if not isinstance(obj, dict):
        raise NodepruneError(
            f"{where}: expected a JSON object with fields {', '.join(NATIVE_FIELDS)}, "
            f"got {type(obj).__name__}"
        )
    split = _split(where, obj)
    clean = _text(where, obj, "clean", prompt=True)
    if PREDICT_OPEN in clean:
        return _Parsed(_edge_pruning_record(where, obj, clean, split), clean)
    missing = [f for f in NATIVE_FIELDS if f not in obj]
    if missing:
        hint = ""
        if "corrupt" in obj or "answers" in obj:
            hint = " (this looks like an auto-circuit prompt: those go in a 'prompts' list)"
        raise NodepruneError(f"{where}: missing field {', '.join(map(repr, missing))}{hint}")
    record = Record(
        where,
        clean,
        _text(where, obj, "corrupted", prompt=True),
        (_text(where, obj, "answer"),),
        (_text(where, obj, "distractor"),),
        split,
    )
    return _Parsed(record, clean)


def _edge_pruning_record(where: str, obj: dict, clean: str, split: str | None) -> Record:
    prompt, answer = _predict_span(where, "clean", clean)
    if "corrupted" not in obj:
        raise NodepruneError(f"{where}: missing field 'corrupted'")
    corrupted_text = _text(where, obj, "corrupted", prompt=True)
    corrupted, corrupted_answer = corrupted_text, None
    if PREDICT_OPEN in corrupted_text:
        corrupted, corrupted_answer = _predict_span(where, "corrupted", corrupted_text)
    if "distractor" in obj:
        distractor = _text(where, obj, "distractor")
    elif corrupted_answer is not None:
        distractor = corrupted_answer
    else:
        raise NodepruneError(
            f"{where}: no distractor: mark the corrupted prompt's continuation with "
            f"{PREDICT_OPEN}...{PREDICT_CLOSE} or add a 'distractor' field"
        )
    return Record(where, prompt, corrupted, (answer,), (distractor,), split)


def _predict_span(where: str, field: str, text: str) -> tuple[str, str]:
    """Split an Edge Pruning text into (prompt, answer), moving trailing spaces over."""
    start = text.index(PREDICT_OPEN)
    end = text.find(PREDICT_CLOSE, start)
    if end < 0:
        raise NodepruneError(f"{where}: {field!r} has {PREDICT_OPEN} but no {PREDICT_CLOSE}")
    prompt, answer = text[:start], text[start + len(PREDICT_OPEN) : end]
    stripped = prompt.rstrip()
    answer = prompt[len(stripped) :] + answer
    if not stripped.strip():
        raise NodepruneError(f"{where}: {field!r} has no prompt before {PREDICT_OPEN}")
    if not answer.strip():
        raise NodepruneError(f"{where}: {field!r} has nothing between the predict markers")
    return stripped, answer


def _auto_circuit_records(path: Path, text: str) -> list[Record]:
    try:
        data = json.loads(text)
    except _JSON_ERRORS as exc:
        line = f":{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise NodepruneError(
            f"{path}{line}: {_json_problem(exc)}; expected one JSON object per line, or an "
            "auto-circuit file with a 'prompts' list"
        ) from None
    if not isinstance(data, dict) or "prompts" not in data:
        raise NodepruneError(
            f"{path}:1: expected one JSON object per line, or an auto-circuit file "
            "(a JSON object with a 'prompts' list)"
        )
    prompts = data["prompts"]
    if not isinstance(prompts, list) or not prompts:
        raise NodepruneError(f"{path}: 'prompts' must be a non-empty list of objects")
    lines = _prompt_item_lines(text)
    if len(lines) != len(prompts):
        lines = [0] * len(prompts)
    records = []
    for i, (item, line) in enumerate(zip(prompts, lines, strict=True)):
        where = f"{path}:{line} (prompts[{i}])" if line else f"{path} (prompts[{i}])"
        if not isinstance(item, dict):
            raise NodepruneError(f"{where}: expected an object, got {type(item).__name__}")
        missing = [f for f in AUTO_CIRCUIT_FIELDS if f not in item]
        if missing:
            raise NodepruneError(f"{where}: missing field {', '.join(map(repr, missing))}")
        records.append(
            Record(
                where,
                _text(where, item, "clean", prompt=True),
                _text(where, item, "corrupt", prompt=True),
                _texts(where, item, "answers"),
                _texts(where, item, "wrong_answers"),
                _split(where, item),
            )
        )
    return records


def _json_problem(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"malformed JSON ({exc.msg} at column {exc.colno})"
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply to read"
    return f"unreadable JSON ({str(exc).splitlines()[0][:120]})"


def _text(where: str, obj: dict, field: str, prompt: bool = False) -> str:
    if field not in obj:
        raise NodepruneError(f"{where}: missing field {field!r}")
    value = obj[field]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        raise NodepruneError(
            f"{where}: field {field!r} holds token ids; give text (ids depend on the tokenizer)"
        )
    if not isinstance(value, str):
        raise NodepruneError(
            f"{where}: field {field!r} must be a string, got {type(value).__name__}"
        )
    if not (value.strip() if prompt else value):
        raise NodepruneError(f"{where}: field {field!r} is empty")
    if len(value) > MAX_TEXT_CHARS:
        raise NodepruneError(
            f"{where}: field {field!r} is {len(value):,} characters long, more than the "
            f"{MAX_TEXT_CHARS:,} a prompt may have; shorten it"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a JSON escape of a lone surrogate, e.g. "\ud800"
        raise NodepruneError(
            f"{where}: field {field!r} is not valid text ({exc.reason} at character "
            f"{exc.start}); remove the lone surrogate escape"
        ) from exc
    return value


def _texts(where: str, obj: dict, field: str) -> tuple[str, ...]:
    value = obj[field]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise NodepruneError(f"{where}: field {field!r} must be a non-empty list of strings")
    return tuple(_text(where, {field: v}, field) for v in value)


def _split(where: str, obj: dict) -> str | None:
    if "split" not in obj:
        return None
    value = obj["split"]
    if not isinstance(value, str) or value.lower() not in SPLIT_NAMES:
        raise NodepruneError(
            f"{where}: unknown split {value!r}{closest(str(value), SPLIT_NAMES)}; "
            "use train, validation or test"
        )
    return SPLIT_NAMES[value.lower()]


_SPACE = re.compile(r"\s*")


def _prompt_item_lines(text: str) -> list[int]:
    """The line on which each item of the top-level "prompts" list starts (for error
    messages); empty when the layout is not the expected one."""
    decoder = json.JSONDecoder()

    def skip(pos: int) -> int:
        return _SPACE.match(text, pos).end()

    try:
        pos = skip(0)
        if text[pos] != "{":
            return []
        pos += 1
        while True:
            pos = skip(pos)
            if text[pos] == "}":
                return []
            key, pos = decoder.raw_decode(text, pos)
            pos = skip(pos)
            pos = skip(pos + 1)  # the colon
            if key == "prompts" and text[pos] == "[":
                return _item_lines(text, pos + 1, decoder, skip)
            _, pos = decoder.raw_decode(text, pos)
            pos = skip(pos)
            if text[pos] == ",":
                pos += 1
    except (IndexError, ValueError, RecursionError):
        return []


def _item_lines(text: str, pos: int, decoder: json.JSONDecoder, skip) -> list[int]:
    lines, line, counted = [], 1, 0
    while True:
        pos = skip(pos)
        if text[pos] == "]":
            return lines
        line += text.count("\n", counted, pos)
        counted = pos
        lines.append(line)
        _, pos = decoder.raw_decode(text, pos)
        pos = skip(pos)
        if text[pos] == ",":
            pos += 1
