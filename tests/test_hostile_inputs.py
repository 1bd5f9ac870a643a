"""The hostile inputs of issue 16, through the ``nodeprune`` command as a user types them:
model folders and GGUF files that are not models, devices that cannot run one, configs
nested or typed wrongly, task files with prompts too long or too deep. Each must end in
one clean line (``nodeprune: error: ...`` or argparse's usage error, exit status 2) that
names the problem; a traceback or a run that goes ahead fails the test.

Run with ``-s`` to see the counts (inputs, clean errors, tracebacks, accepted).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import save_tiny_model
from test_fuzz_models import write_tiny_gguf
from test_validation import valid_circuit_json

from nodeprune.cli import main

#: Small sizes, should an input wrongly get as far as building the task data (no case
#: may get further: the run itself is replaced by a stop, see ``no_runs``).
TINY = ["--task", "ioi", "--n-train", "4", "--n-val", "0", "--n-test", "4", "--no-filter",
        "--quiet"]  # fmt: skip
counts: Counter = Counter()


class Reached(Exception):
    """A hostile input got as far as a discovery run or a sweep: it was accepted."""


@pytest.fixture(autouse=True)
def no_runs(monkeypatch):
    """Every case must fail before any optimisation starts; one that does not is
    stopped here (so a regression cannot run ``steps = 1e23`` for ever) and counted."""
    from nodeprune.discovery import Discovery
    from nodeprune.sweeps import runner

    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(Discovery, "run", reached)
    monkeypatch.setattr(runner, "run_sweep", reached)


@dataclass
class World:
    root: Path
    gpt2: Path  # a tiny GPT-2 folder: 64 positions
    gguf: Path  # a tiny Llama GGUF

    def folder(self, name: str, files: dict[str, bytes | Path] | None = None) -> Path:
        out = self.root / name
        out.mkdir()
        for file, content in (files or {}).items():
            data = content.read_bytes() if isinstance(content, Path) else content
            (out / file).write_bytes(data)
        return out

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def gpt2_with(self, name: str, **changes: bytes) -> Path:
        out = self.root / name
        shutil.copytree(self.gpt2, out)
        for file, data in changes.items():
            (out / file.replace("__", ".")).write_bytes(data)
        return out


@pytest.fixture(scope="module")
def world(tmp_path_factory, tokenizer) -> World:
    root = tmp_path_factory.mktemp("hostile")
    gpt2 = save_tiny_model(root / "tiny-gpt2", tokenizer, "gpt2")
    return World(root, gpt2, write_tiny_gguf(root / "tiny.gguf", tokenizer))


def _gguf_variant(world: World, name: str, edit: Callable[[bytes], bytes]) -> Path:
    return world.file(name, edit(world.gguf.read_bytes()))


def _set_bytes(data: bytes, pos: int, new: bytes) -> bytes:
    return data[:pos] + new + data[pos + len(new) :]


def _discover_model(make: Callable[[World], Path | str]) -> Callable[[World], list[str]]:
    return lambda w: ["discover", "--model", str(make(w)), *TINY]


def _evaluate(*flags: str, circuit: Callable[[World], str] | None = None):
    """``nodeprune evaluate`` of a valid circuit file for the tiny GPT-2 (or of the text
    ``circuit`` makes)."""

    def argv(w: World) -> list[str]:
        path = w.root / f"circuit{abs(hash(flags))}.json"
        if circuit is not None:
            path.write_text(circuit(w))
        else:
            data = valid_circuit_json()
            data["model"] = str(w.gpt2)
            path.write_text(json.dumps(data))
        return ["evaluate", str(path), *flags]

    return argv


def _discover_tiny(*flags: str) -> Callable[[World], list[str]]:
    return lambda w: ["discover", "--model", str(w.gpt2), *flags, *TINY]


def _toml(text: str, command: str = "discover") -> Callable[[World], list[str]]:
    def argv(w: World) -> list[str]:
        path = w.root / f"c{abs(hash(text))}.toml"
        path.write_text(text)
        extra = ["--backend", "local"] if command == "sweep" else TINY
        return [command, "--config", str(path), "--model", str(w.gpt2), *extra]

    return argv


def _task_file(lines: list[str]) -> Callable[[World], list[str]]:
    def argv(w: World) -> list[str]:
        path = w.root / f"t{abs(hash(tuple(lines)))}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        return ["discover", "--model", str(w.gpt2), "--task-file", str(path), *TINY]

    return argv


def _row(clean: str, corrupted: str, answer: str = " Mary", distractor: str = " John") -> str:
    return json.dumps(dict(clean=clean, corrupted=corrupted, answer=answer, distractor=distractor))


IOI = " When Mary and John went to the store, John gave a drink to"
IOI_BAD = " When Alice and Bob went to the store, Bob gave a drink to"
VALID_ROWS = [_row(IOI, IOI_BAD)] * 4

#: (id, argv maker, a regex the error line must match)
CASES: list[tuple[str, Callable[[World], list[str]], str]] = [
    # -- 7. model inputs
    (
        "folder-not-a-model",
        _discover_model(lambda w: w.folder("notes", {"README": b"hi"})),
        "not a model folder",
    ),
    ("empty-folder", _discover_model(lambda w: w.folder("empty")), "is empty"),
    (
        "config-only-folder",
        _discover_model(lambda w: w.folder("cfg", {"config.json": w.gpt2 / "config.json"})),
        "no weights .* no tokenizer files",
    ),
    (
        "no-tokenizer-folder",
        _discover_model(
            lambda w: w.folder(
                "notok",
                {
                    "config.json": w.gpt2 / "config.json",
                    "model.safetensors": w.gpt2 / "model.safetensors",
                },
            )
        ),
        "no tokenizer files",
    ),
    (
        "truncated-safetensors",
        _discover_model(
            lambda w: w.gpt2_with(
                "trunc-st", model__safetensors=(w.gpt2 / "model.safetensors").read_bytes()[:5000]
            )
        ),
        "truncated or damaged",
    ),
    (
        "garbage-config-json",
        _discover_model(lambda w: w.gpt2_with("bad-config", config__json=b'{"model_type": ')),
        "config.json is not valid JSON",
    ),
    (
        "truncated-gguf",
        _discover_model(lambda w: _gguf_variant(w, "trunc.gguf", lambda d: d[: len(d) // 2])),
        "GGUF file truncated or damaged",
    ),
    (
        "garbage-gguf",
        _discover_model(lambda w: w.file("garbage.gguf", bytes(range(256)) * 8)),
        "not a GGUF file",
    ),
    ("empty-gguf", _discover_model(lambda w: w.file("empty.gguf", b"")), "is empty"),
    (
        "gguf-bad-version",
        _discover_model(
            lambda w: _gguf_variant(
                w, "v99.gguf", lambda d: _set_bytes(d, 4, (99).to_bytes(4, "little"))
            )
        ),
        "format version 99",
    ),
    (
        "gguf-broken-header",
        _discover_model(
            lambda w: _gguf_variant(w, "hdr.gguf", lambda d: _set_bytes(d, 8, b"\xff" * 8))
        ),
        "truncated or damaged",
    ),
    (
        "gguf-header-only",
        _discover_model(lambda w: _gguf_variant(w, "head.gguf", lambda d: d[:24])),
        "truncated or damaged",
    ),
    ("gguf-folder", _discover_model(lambda w: w.folder("dir.gguf")), "is a folder"),
    ("missing-gguf", _discover_model(lambda w: w.root / "nope.gguf"), "does not exist"),
    (
        "missing-absolute-path",
        _discover_model(lambda w: w.root / "no" / "such" / "model"),
        "no such model folder",
    ),
    (
        "missing-relative-path",
        _discover_model(lambda w: "./no-such-model-folder"),
        "no such model folder",
    ),
    (
        "text-file-as-model",
        _discover_model(lambda w: w.file("notes.txt", "hello")),
        "is a file, not a model folder",
    ),
    # -- 8. devices
    ("device-meta", _discover_tiny("--device", "meta"), "holds no data"),
    ("device-nonsense", _discover_tiny("--device", "everywhere"), "not a device name"),
    (
        "device-map-everywhere",
        _discover_tiny("--device-map", "everywhere"),
        "neither a placement strategy nor a device",
    ),
    ("device-map-missing-gpu", _discover_tiny("--device-map", '{"": 7}'), "GPU 7"),
    ("device-map-meta", _discover_tiny("--device-map", '{"": "meta"}'), "not a device"),
    ("device-map-list", _discover_tiny("--device-map", "[0, 1]"), "neither a placement"),
    ("device-map-bad-json", _discover_tiny("--device-map", '{"": '), "not valid JSON"),
    ("evaluate-device-meta", _evaluate("--device", "meta"), "holds no data"),
    ("evaluate-n-huge", _evaluate("--n", "1000000000000"), r"--n: must be in \[1, "),
    ("evaluate-seed-negative", _evaluate("--seed", "-1"), r"--seed: must be in \[0, "),
    (
        "evaluate-circuit-huge-int",
        _evaluate(circuit=lambda w: '{"format_version": ' + "1" * 5000 + "}"),
        "not a circuit JSON file",
    ),
    # -- 9. configs
    ("toml-nested-arrays", _toml("a = " + "[" * 5000 + "]" * 5000), "nested too deeply"),
    ("toml-nested-tables", _toml("a = " + "{b = " * 3000 + "1" + "}" * 3000), "nested too deeply"),
    ("toml-dotted-keys", _toml(".".join(["k"] * 3000) + " = 1"), "nested more than"),
    ("toml-steps-huge", _toml("steps = 99999999999999999999999"), "steps must be in"),
    ("toml-steps-1e23", _toml("steps = 1e23"), "steps must be in"),
    ("flag-steps-huge", _discover_tiny("--steps", "99999999999999999999999"), "steps must be in"),
    ("flag-steps-1e23", _discover_tiny("--steps", "1e23"), "invalid int value"),
    ("flag-batch-huge", _discover_tiny("--batch-size", "10000000000"), "batch_size must be in"),
    ("toml-lam-g-scalar", _toml("lam_g = 1"), "lam_g must be a table"),
    ("sweep-lam-g-scalar", _toml("lam_g = 1", "sweep"), "lam_g must be a table"),
    ("sweep-scalar", _toml("sweep = 3", "sweep"), "sweep must be a table"),
    (
        "sweep-lam-g-axis-scalar",
        _toml("[sweep]\nlam_g = 1", "sweep"),
        "sweep.lam_g must be a table",
    ),
    ("sweep-run-string", _toml('run = "fast"', "sweep"), "run must be a table"),
    ("sweep-run-bad-backend", _toml('[run]\nbackend = "mpi"', "sweep"), "backend must be one of"),
    (
        "sweep-run-cpus-string",
        _toml('[run]\ntrial_cpus = "many"', "sweep"),
        "trial_cpus must be a number",
    ),
    (
        "sweep-run-cpus-negative",
        _toml("[run]\ntrial_cpus = -2", "sweep"),
        "trial_cpus must be a number",
    ),
    ("sweep-run-device-map-int", _toml("[run]\ndevice_map = 3", "sweep"), "device_map must be"),
    (
        "sweep-run-checkpointing-string",
        _toml('[run]\ngradient_checkpointing = "yes"', "sweep"),
        "gradient_checkpointing must be true or false",
    ),
    (
        "sweep-nested-toml",
        _toml("[sweep]\nlam = " + "[" * 4000 + "]" * 4000, "sweep"),
        "nested too deeply",
    ),
    # -- 10. task files
    (
        "task-nested-json-line",
        _task_file(["[" * 100_000 + "]" * 100_000, *VALID_ROWS]),
        r"\.jsonl:1: JSON nested too deeply",
    ),
    (
        "task-nested-json-object",
        _task_file([*VALID_ROWS, '{"clean": ' + "[" * 50_000]),
        r"\.jsonl:5: ",
    ),
    (
        "task-huge-int",
        _task_file([*VALID_ROWS, '{"clean": ' + "7" * 5000 + "}"]),
        r"\.jsonl:5: unreadable JSON",
    ),
    (
        "task-prompt-longer-than-context",
        _task_file([*VALID_ROWS, _row(IOI * 8, IOI_BAD * 8)]),
        r"\.jsonl:5: the prompt is \d+ tokens long, more than the 64",
    ),
    (
        "task-1mb-line",
        _task_file([*VALID_ROWS, _row("x" * 1_000_000, "y" * 1_000_000)]),
        r"\.jsonl:5: field 'clean' is 1,000,000 characters long",
    ),
    ("task-auto-circuit-nested", _task_file(['{"prompts": ' + "[" * 100_000]), "nested too deeply"),
]


@pytest.mark.parametrize("make_argv, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_is_one_clean_line(world, make_argv, pattern, capsys, tmp_path):
    import re

    argv = make_argv(world)
    if argv[0] in ("discover", "sweep"):
        argv += ["--out", str(tmp_path / "run")]
    try:
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse: usage line and one error line
            status = exc.code
    except Reached:
        counts["accepted (silent)"] += 1
        pytest.fail(f"accepted: {argv}")
    except Exception:
        counts["traceback"] += 1
        raise
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if re.match(r"nodeprune( \w+)?: error:", line)]
    if status == 0:
        counts["accepted (silent)"] += 1
    elif "Traceback" in err or len(errors) != 1:
        counts["not one line"] += 1
    else:
        counts["clean error"] += 1
    assert status == 2, f"exit status {status}; stderr: {err[-500:]}"
    assert "Traceback" not in err
    assert len(errors) == 1, err[-1000:]
    assert re.search(pattern, errors[0]), errors[0]
    assert len(errors[0]) < 600, errors[0]


def test_hostile_counts_are_reported():
    # Runs after the cases above (pytest keeps file order).
    total = sum(counts.values())
    if total < len(CASES):
        pytest.skip("only some cases ran: run the whole file for the counts")
    print(f"hostile inputs: {total} tried, {dict(counts)}")
    assert counts["clean error"] == total


def test_wrap_model_caps_the_tokenizer_at_the_models_positions(tokenizer):
    import copy

    from conftest import MODEL_CLASSES, tiny_config

    from nodeprune.models import wrap_model

    fresh = copy.deepcopy(tokenizer)
    fresh.model_max_length = int(1e30)  # Hugging Face's "unknown"
    loaded = wrap_model(MODEL_CLASSES["gpt2"](tiny_config("gpt2")), fresh, "tiny")
    assert loaded.tokenizer.model_max_length == tiny_config("gpt2").n_positions


def test_built_in_task_prompts_longer_than_the_model_are_refused(tokenizer):
    import copy
    import random

    from nodeprune.errors import NodepruneError
    from nodeprune.prompts import encode_examples
    from nodeprune.tasks.ioi import IOITask

    short = copy.deepcopy(tokenizer)
    short.model_max_length = 8  # fewer positions than any IOI prompt has tokens
    examples = IOITask().generate(2, random.Random(0), short)
    with pytest.raises(NodepruneError, match=r"example 0 .* more than the 8 this model takes"):
        encode_examples(examples, short)
