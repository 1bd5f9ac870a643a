"""checkpoint.json is covered by its own checksum, and the task file's content by the
checkpoint's and the circuit's: an edited value, a flipped bit or an edited task file is
refused on resume (and on evaluate) instead of silently giving another circuit. Files
written before these checksums still load, with a warning."""

from __future__ import annotations

import json
import random

import pytest
from conftest import tiny_discovery_config
from run_folder_helpers import FAST, one_error

from nodeprune import Discovery
from nodeprune.checkpoint import (
    META_CHECKSUM,
    META_FILE,
    TASK_CHECKSUM,
    TENSORS_FILE,
    read_checkpoint,
    read_meta,
)
from nodeprune.cli import main
from nodeprune.errors import NodepruneError
from nodeprune.runs import CIRCUIT_FILE, TASK_FILE_SHA256

NAMES = ["Mary", "John", "Alice", "Henry", "Lucy", "Eric", "Sam", "Ben", "Max", "Jane"]


def write_task_file(path, n: int = 30, swap_first: bool = False):
    lines = []
    for i in range(n):
        a, b = NAMES[i % 10], NAMES[(i // 10 + i + 1) % 10]
        answer, distractor = (b, a) if swap_first and i == 0 else (a, b)
        lines.append(
            {
                "clean": f"When {a} and {b} went to the store, {b} gave a drink to",
                "corrupted": f"When {b} and {a} went to the store, {a} gave a drink to",
                "answer": f" {answer}",
                "distractor": f" {distractor}",
            }
        )
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


@pytest.fixture(scope="module")
def loaded(tokenizer):
    from conftest import tiny_model

    return tiny_model("llama", tokenizer)


def _config(**kw):
    return tiny_discovery_config(**{"steps": 4, "n_train": 16, "n_test": 8, **kw})


@pytest.fixture
def folder(loaded, tmp_path):
    Discovery(loaded, _config()).run(progress=False, checkpoint_dir=tmp_path, checkpoint_every=3)
    return tmp_path


def _edit(folder, change) -> None:
    path = folder / META_FILE
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta, indent=1))


EDITS = {
    "step": lambda m: m.update(step=m["step"] - 1),
    "cursor": lambda m: m.update(cursor=0),
    "schedule": lambda m: m["scheduler"].update(last_epoch=1),
    "lr": lambda m: m["optimizer"]["param_groups"][0].update(lr=0.25),
    "config.lam": lambda m: m["config"].update(lam=0.5),
    "history": lambda m: m["history"][0].update(loss=0.0),
    "rng": lambda m: m["rng"]["numpy"].__setitem__(1, 3),
    "task checksum": lambda m: m.update({TASK_CHECKSUM: "0" * 64}),
    "tensors checksum": lambda m: m.update(tensors_sha256="0" * 64),
}


@pytest.mark.parametrize("what", list(EDITS))
def test_an_edited_value_is_refused(loaded, folder, what):
    _edit(folder, EDITS[what])
    with pytest.raises(NodepruneError, match="edited or corrupted.*--overwrite") as info:
        Discovery(loaded, _config()).load_checkpoint(folder)
    assert "\n" not in str(info.value)


def test_another_layout_of_the_same_values_still_loads(loaded, folder):
    _edit(folder, lambda m: None)  # re-indented, same values
    Discovery(loaded, _config()).load_checkpoint(folder)


def test_no_flipped_bit_changes_what_is_resumed(folder):
    original = read_meta(folder)
    meta_bytes = (folder / META_FILE).read_bytes()
    tensor_bytes = (folder / TENSORS_FILE).read_bytes()
    rng = random.Random(0)
    refused = 0
    for _ in range(300):
        for name, data in ((META_FILE, meta_bytes), (TENSORS_FILE, tensor_bytes)):
            flipped = bytearray(data)
            flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            (folder / name).write_bytes(bytes(flipped))
            try:
                tensors, meta = read_checkpoint(folder)
            except NodepruneError as exc:
                assert "\n" not in str(exc)
                refused += 1
            else:  # accepted only where the flip changed no value (a layout byte)
                assert meta == original
            (folder / name).write_bytes(data)
    assert refused >= 590


def test_a_checkpoint_from_before_the_checksums_loads_with_a_warning(loaded, folder, capsys):
    def old_format(meta):
        meta.update(format_version=1)
        meta.pop(META_CHECKSUM)
        meta.pop(TASK_CHECKSUM)

    _edit(folder, old_format)
    resumed = Discovery(loaded, _config())
    resumed.load_checkpoint(folder)
    assert resumed.step == 4
    assert "without checksums" in capsys.readouterr().err


def test_a_task_file_edited_before_a_library_resume_is_refused(loaded, tmp_path):
    task_file = write_task_file(tmp_path / "pairs.jsonl")
    cfg = _config(task_file=str(task_file))
    Discovery(loaded, cfg).run(progress=False, checkpoint_dir=tmp_path / "run")
    write_task_file(task_file, swap_first=True)
    with pytest.raises(NodepruneError, match="pairs.jsonl has changed since the checkpoint"):
        Discovery(loaded, cfg).load_checkpoint(tmp_path / "run")


@pytest.fixture(scope="module")
def model_dir(tiny_llama_dir):
    return tiny_llama_dir


def _discover(model_dir, out, task_file, *extra) -> int:
    argv = ["discover", "--model", str(model_dir), "--out", str(out), *FAST, "--lam", "0"]
    return main([*argv, "--task-file", str(task_file), *extra])


def test_a_task_file_edited_between_runs_is_refused_on_resume_and_evaluate(
    model_dir, tmp_path, capsys
):
    task_file = write_task_file(tmp_path / "pairs.jsonl")
    out = tmp_path / "run"
    assert _discover(model_dir, out, task_file, "--checkpoint-every", "2") == 0
    circuit = json.loads((out / CIRCUIT_FILE).read_text())
    assert len(circuit["extra"][TASK_FILE_SHA256]) == 64
    assert main(["evaluate", str(out / CIRCUIT_FILE)]) == 0
    capsys.readouterr()
    write_task_file(task_file, swap_first=True)  # the sign of one logit difference flips
    assert main(["discover", "--out", str(out), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "has changed since the checkpoint" in one_error_of(err) and "loading" not in err
    assert main(["evaluate", str(out / CIRCUIT_FILE)]) == 2
    error = one_error(capsys)
    assert "has changed since" in error and "discover again" in error
    write_task_file(task_file)  # put back: both work again
    assert main(["evaluate", str(out / CIRCUIT_FILE)]) == 0


def one_error_of(err: str) -> str:
    lines = [x for x in err.splitlines() if x.startswith("nodeprune: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_circuit_without_the_task_checksum_is_evaluated_with_a_warning(
    model_dir, tmp_path, capsys
):
    task_file = write_task_file(tmp_path / "pairs.jsonl")
    out = tmp_path / "run"
    assert _discover(model_dir, out, task_file) == 0
    data = json.loads((out / CIRCUIT_FILE).read_text())
    del data["extra"][TASK_FILE_SHA256]
    (out / CIRCUIT_FILE).write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["evaluate", str(out / CIRCUIT_FILE)]) == 0
    assert "does not record the SHA-256 of its task file" in capsys.readouterr().err
