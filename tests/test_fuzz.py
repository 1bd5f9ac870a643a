"""Loaders under random input: whatever the bytes, the only failure allowed is a one-line
NodepruneError. Property-based tests (hypothesis) on the config and circuit loaders, and
fuzz loops of random and mutated bytes on the circuit-file and task-file parsers (among the
values swapped in: an integer of 5000 digits, nesting 5000 deep). Model folders and GGUF
files: test_fuzz_models.py.

``NODEPRUNE_FUZZ_N`` sets the inputs per fuzz loop (default 150) and
``NODEPRUNE_HYPOTHESIS_N`` the examples per property (default 100); run with ``-s`` to see
the counts.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
import tomllib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_validation import valid_circuit_json

from nodeprune.circuit import Circuit
from nodeprune.config import DiscoveryConfig
from nodeprune.errors import NodepruneError
from nodeprune.granularity import GRANULARITIES

FUZZ_N = int(os.environ.get("NODEPRUNE_FUZZ_N", "150"))
PROPERTY = settings(
    max_examples=int(os.environ.get("NODEPRUNE_HYPOTHESIS_N", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
CONFIG_FIELDS = list(DiscoveryConfig.__dataclass_fields__)


def outcome(fn: Callable[[], Any]) -> str:
    """``ok`` or ``error`` (a one-line NodepruneError); anything else fails the test."""
    try:
        fn()
    except NodepruneError as exc:
        assert "\n" not in str(exc), str(exc)
        return "error"
    return "ok"


# -- config ----------------------------------------------------------------------------
def _field_values() -> st.SearchStrategy:
    return (
        JSON_VALUES
        | st.sampled_from(["ioi", "corrupted", "mean", "cpu", "cuda:0", "float32", "bfloat16"])
        | st.lists(st.sampled_from([*GRANULARITIES, "heads", ""]), max_size=4)
        | st.dictionaries(st.sampled_from([*GRANULARITIES, "x"]), JSON_SCALARS, max_size=3)
    )


config_counts: Counter = Counter()


@PROPERTY
@given(
    st.dictionaries(st.sampled_from(CONFIG_FIELDS) | st.text(max_size=10), _field_values(),
                    max_size=6)
)  # fmt: skip
def test_config_loader_accepts_or_explains(data):
    def load() -> None:
        cfg = DiscoveryConfig.from_dict(data, source="fuzz.toml").validate()
        # What validate lets through is usable as it stands.
        assert isinstance(cfg.steps, int) and cfg.steps > 0
        assert 0.0 <= cfg.lam <= 1.0 and cfg.lr > 0
        assert set(cfg.lam_g) == set(GRANULARITIES) and cfg.granularities

    config_counts[outcome(load)] += 1


@PROPERTY
@given(st.text(max_size=200))
def test_toml_text_accepts_or_explains(text):
    from nodeprune.config import load_toml

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")

        def load() -> None:
            DiscoveryConfig.from_dict(load_toml(path), source=str(path)).validate()

        try:
            config_counts[outcome(load)] += 1
        except UnicodeEncodeError:  # lone surrogates cannot be written as a file at all
            pass


def test_toml_loader_rejects_what_tomllib_rejects():
    # Sanity check for the property above: the file text reaches tomllib.
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads("a = ")


# -- circuits: structured mutations ----------------------------------------------------
def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):  # the first few entries of each list suffice
            out += _paths(v, prefix + (i,))
    return out


VALID = valid_circuit_json()
PATHS = _paths(VALID)
circuit_counts: Counter = Counter()


def _apply(data: Any, path: tuple, value: Any, delete: bool) -> None:
    for key in path[:-1]:
        data = data[key]
    if delete and isinstance(data, dict):
        data.pop(path[-1])
    else:
        data[path[-1]] = value


@PROPERTY
@given(
    st.lists(st.tuples(st.sampled_from(PATHS), JSON_VALUES, st.booleans()), min_size=1,
             max_size=4)
)  # fmt: skip
def test_mutated_circuit_json_loads_or_explains(mutations):
    data = json.loads(json.dumps(VALID))
    for path, value, delete in mutations:
        try:
            _apply(data, path, value, delete)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced this path

    def load() -> None:
        c = Circuit.from_json(data, source="fuzz.json")
        for g in c.enabled:
            assert tuple(c.masks[g].shape) == GRANULARITIES[g].shape(c.dims)

    circuit_counts[outcome(load)] += 1


@PROPERTY
@given(JSON_VALUES)
def test_arbitrary_json_is_not_a_circuit(value):
    assert outcome(lambda: Circuit.from_json(value)) == "error"


# -- byte-level fuzz loops -------------------------------------------------------------
INTERESTING = [b"null", b"-1", b"0", b"1e999", b'"x"', b"[]", b"{}", b"true", b"NaN",
               b"99999999999999999999", b"\xff", b"\x00", b"[[[[", b'"\\ud800"',
               b"7" * 5000, b"[" * 5000]  # fmt: skip


SCALAR = re.compile(rb'-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null|"[^"\\]*"')


def mutate(data: bytes, rng: random.Random) -> bytes:
    """A few random edits: bytes flipped, inserted or cut, or a JSON scalar swapped for
    another value (which keeps the text parseable, to reach the checks behind it)."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(len(b) + 1)
        op = rng.randrange(5)
        # Mostly printable ASCII: random high bytes only ever test the UTF-8 check.
        byte = rng.randrange(32, 127) if rng.random() < 0.9 else rng.randrange(256)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = byte
        elif op == 1:
            b[pos:pos] = bytes([byte])
        elif op == 2:
            del b[pos : pos + rng.randint(1, 24)]
        else:
            scalars = list(SCALAR.finditer(bytes(b)))
            if scalars:
                m = rng.choice(scalars)
                b[m.start() : m.end()] = rng.choice(INTERESTING)
    return bytes(b)


def fuzz_inputs(valid: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    randoms = [rng.randbytes(rng.randint(0, 300)) for _ in range(FUZZ_N // 3)]
    return randoms + [mutate(valid, rng) for _ in range(FUZZ_N - len(randoms))]


#: Crashes already found and tracked by a test below, counted apart so the loop keeps
#: looking for new ones (none open now: the lone-surrogate crash is fixed).
KNOWN_CRASHES: tuple[str, ...] = ()


def fuzz_loop(inputs: list[bytes], folder: Path, load: Callable[[Path], Any]) -> Counter:
    """Outcomes of ``load`` on each input; crashes (anything but a NodepruneError) are
    counted by type, with the first input of each kept, so one bug hides no other."""
    counts: Counter = Counter()
    crashes: dict[str, bytes] = {}
    for i, blob in enumerate(inputs):
        path = folder / f"fuzz{i}"
        path.write_bytes(blob)
        try:
            counts[outcome(lambda p=path: load(p))] += 1
        except Exception as exc:  # noqa: BLE001 -- any other exception is the finding
            kind = f"{type(exc).__name__}: {str(exc)[:80]}"
            if any(known in kind for known in KNOWN_CRASHES):
                counts["known crash"] += 1
                continue
            counts["crash"] += 1
            crashes.setdefault(kind, blob[:300])
    assert not crashes, f"{counts['crash']} crashes: {crashes}"
    return counts


def test_circuit_file_fuzz(tmp_path):
    valid = json.dumps(VALID, indent=1).encode()
    counts = fuzz_loop(fuzz_inputs(valid, seed=1), tmp_path, Circuit.load)
    print(f"circuit-file fuzz: {sum(counts.values())} inputs, {dict(counts)}")
    assert sum(counts.values()) == FUZZ_N and counts["error"] > 0


def _valid_task_file(kind: str, tokenizer) -> bytes:
    """A small task file that the tokenizer accepts: IOI prompt pairs in each format."""
    from nodeprune.tasks.ioi import IOITask

    examples = IOITask().generate(6, random.Random(0), tokenizer)
    if kind == "auto-circuit":
        prompts = [
            {"clean": e.clean, "corrupt": e.corrupted, "answers": [e.answer],
             "wrong_answers": [e.distractor]}
            for e in examples
        ]  # fmt: skip
        return json.dumps({"prompts": prompts}, indent=1).encode()
    rows: list[dict] = []
    for i, e in enumerate(examples):
        row = {"clean": e.clean, "corrupted": e.corrupted}
        if kind == "edge-pruning" and i % 2:
            row["clean"] += f"<predict>{e.answer}</predict>"
            row["corrupted"] += f"<predict>{e.distractor}</predict>"
        else:
            row.update(answer=e.answer, distractor=e.distractor)
        if i == 0:
            row["split"] = "test"
        rows.append(row)
    return "\n".join(json.dumps(r) for r in rows).encode() + b"\n"


@pytest.mark.parametrize("kind", ["nodeprune", "edge-pruning", "auto-circuit"])
def test_task_file_fuzz(tmp_path, tokenizer, kind):
    custom = pytest.importorskip("nodeprune.tasks.custom", reason="task-file parser not present")
    from nodeprune.prompts import encode_examples

    def load(path: Path) -> None:
        task = custom.CustomTask.from_file(path)
        examples = [custom.to_example(r, tokenizer) for r in task.records[:8]]
        encode_examples(examples, tokenizer)

    valid = _valid_task_file(kind, tokenizer)
    path = tmp_path / "valid.jsonl"
    path.write_bytes(valid)
    assert outcome(lambda: load(path)) == "ok"  # the seed input itself is accepted
    counts = fuzz_loop(fuzz_inputs(valid, seed=2), tmp_path, load)
    print(f"task-file fuzz ({kind}): {sum(counts.values())} inputs, {dict(counts)}")
    assert sum(counts.values()) == FUZZ_N and counts["error"] > 0


def test_task_file_with_a_lone_surrogate(tmp_path, tokenizer):
    custom = pytest.importorskip("nodeprune.tasks.custom", reason="task-file parser not present")
    row = '{"clean": "a \\ud800 b", "corrupted": "a b c", "answer": " Mary", "distractor": " John"}'
    path = tmp_path / "t.jsonl"
    path.write_text((row + "\n") * 3)
    with pytest.raises(NodepruneError):
        for record in custom.CustomTask.from_file(path).records:
            custom.to_example(record, tokenizer)


def test_property_counts_are_reported():
    # Runs after the properties in this module (pytest keeps file order).
    print(f"config loader: {dict(config_counts)}; circuit loader: {dict(circuit_counts)}")
    assert sum(config_counts.values()) > 0 and sum(circuit_counts.values()) > 0
