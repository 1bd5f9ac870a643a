"""Custom task files: the three formats, the tokenizer rules, the splits, and a one-line
error naming the file and line for each kind of bad input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from nodeprune.errors import NodepruneError
from nodeprune.tasks import resolve_task
from nodeprune.tasks.custom import CustomTask, to_example
from nodeprune.tasks.custom_file import load_records

GOOD = {
    "clean": "When Mary and John went to the store, John gave a drink to",
    "corrupted": "When Alice and Henry went to the store, Sam gave a drink to",
    "answer": " Mary",
    "distractor": " John",
}


def write_lines(tmp_path: Path, lines: list[str | dict], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def error(path: Path) -> str:
    with pytest.raises(NodepruneError) as info:
        load_records(path)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---- bad input -----------------------------------------------------------------------


def test_missing_file(tmp_path):
    assert "does not exist" in error(tmp_path / "nope.jsonl")


def test_directory_is_not_a_file(tmp_path):
    assert "is not a file" in error(tmp_path)


def test_empty_file(tmp_path):
    assert "empty" in error(write_lines(tmp_path, ["", "  "]))


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + '{"clean": "caf\xe9"}'.encode("latin-1"))
    message = error(path)
    assert f"{path}:2:" in message and "UTF-8" in message and "0xe9" in message


def test_malformed_json_line_names_the_line(tmp_path):
    path = write_lines(tmp_path, [GOOD, GOOD, '{"clean": "x", '])
    message = error(path)
    assert f"{path}:3:" in message and "malformed JSON" in message


def test_a_line_that_is_not_an_object(tmp_path):
    message = error(write_lines(tmp_path, [GOOD, "[1, 2]"]))
    assert ":2:" in message and "expected a JSON object" in message


@pytest.mark.parametrize("field", ["clean", "corrupted", "answer", "distractor"])
def test_missing_field_names_field_and_line(tmp_path, field):
    bad = {k: v for k, v in GOOD.items() if k != field}
    message = error(write_lines(tmp_path, [GOOD, bad]))
    assert ":2:" in message and f"missing field {field!r}" in message


@pytest.mark.parametrize("field", ["clean", "corrupted", "answer", "distractor"])
def test_empty_string_is_rejected(tmp_path, field):
    message = error(write_lines(tmp_path, [{**GOOD, field: ""}]))
    assert ":1:" in message and f"field {field!r} is empty" in message


def test_non_string_field_and_token_ids_are_rejected(tmp_path):
    assert "must be a string, got int" in error(write_lines(tmp_path, [{**GOOD, "answer": 3}]))
    message = error(write_lines(tmp_path, [{**GOOD, "clean": [1, 2, 3]}]))
    assert "token ids" in message


def test_unknown_split_suggests_the_closest(tmp_path):
    message = error(write_lines(tmp_path, [{**GOOD, "split": "tset"}]))
    assert "unknown split 'tset'" in message and "did you mean 'test'" in message


def test_auto_circuit_prompts_look_like_jsonl_lines_get_a_hint(tmp_path):
    line = {"clean": "a b", "corrupt": "a c", "answers": [" x"], "wrong_answers": [" y"]}
    assert "auto-circuit" in error(write_lines(tmp_path, [line]))


def test_unknown_task_name_suggests_the_closest():
    with pytest.raises(NodepruneError, match="did you mean 'induction'"):
        resolve_task("inducton")


# ---- auto-circuit JSON -----------------------------------------------------------------


def auto_circuit_file(tmp_path: Path, prompts: list[dict]) -> Path:
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps({"seq_labels": ["a", "b"], "prompts": prompts}, indent=2))
    return path


AC = {
    "clean": "When Mary and John went to the store, John gave a drink to",
    "corrupt": "When Alice and Henry went to the store, Sam gave a drink to",
    "answers": [" Mary"],
    "wrong_answers": [" John", " Sam"],
}


def test_auto_circuit_file_is_read_with_answer_sets(tmp_path):
    file_format, records = load_records(auto_circuit_file(tmp_path, [AC, AC]))
    assert file_format == "auto-circuit"
    assert records[1].answers == (" Mary",) and records[1].distractors == (" John", " Sam")


def test_auto_circuit_item_errors_name_the_line_where_the_item_starts(tmp_path):
    bad = {k: v for k, v in AC.items() if k != "corrupt"}
    path = auto_circuit_file(tmp_path, [AC, AC, bad])
    text_lines = path.read_text().splitlines()
    third_item = [i + 1 for i, line in enumerate(text_lines) if line.strip() == "{"][3]
    message = error(path)
    assert f"{path}:{third_item} (prompts[2])" in message and "'corrupt'" in message


def test_malformed_auto_circuit_json_names_the_line(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text('{\n  "prompts": [\n    {"clean": "a",}\n  ]\n}\n')
    assert f"{path}:3:" in error(path)


def test_auto_circuit_prompts_must_be_a_non_empty_list(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text('{"prompts": []}')
    assert "non-empty list" in error(path)


# ---- Edge Pruning JSONL ----------------------------------------------------------------


def test_edge_pruning_lines_take_the_marked_text_and_move_trailing_spaces(tmp_path):
    path = write_lines(
        tmp_path,
        [
            {"clean": "1 + 2 = <predict>3</predict>", "corrupted": "1 + 4 = <predict>5</predict>"},
            {
                "clean": "5 + 1 =<predict> 6</predict> ok",
                "corrupted": "1 + 1 =",
                "distractor": " 2",
                "split": "validation",
            },
        ],
    )
    file_format, records = load_records(path)
    assert file_format == "edge-pruning"
    first, second = records
    assert (first.clean, first.corrupted, first.answers, first.distractors) == (
        "1 + 2 =",
        "1 + 4 =",
        (" 3",),
        (" 5",),
    )
    assert (second.clean, second.answers, second.distractors, second.split) == (
        "5 + 1 =",
        (" 6",),
        (" 2",),
        "validation",
    )


def test_edge_pruning_line_without_a_distractor_or_closing_marker(tmp_path):
    no_distractor = {"clean": "1 + 2 = <predict>3</predict>", "corrupted": "1 + 4 ="}
    assert "no distractor" in error(write_lines(tmp_path, [no_distractor]))
    unclosed = {"clean": "1 + 2 = <predict>3", "corrupted": "1 + 4 = <predict>5</predict>"}
    assert "no </predict>" in error(write_lines(tmp_path, [unclosed]))


# ---- tokenizer rules -------------------------------------------------------------------


def custom(tmp_path: Path, lines: list[dict]) -> CustomTask:
    return CustomTask.from_file(write_lines(tmp_path, lines))


def test_multi_token_answers_are_scored_at_their_first_differing_token(tmp_path, tokenizer):
    lines = [
        {**GOOD, "answer": " Mary Anne", "distractor": " John Smith"},
        {**GOOD, "answer": " Mary Anne", "distractor": " Mary Lou"},
    ]
    task = custom(tmp_path, lines * 2)
    differ_first, differ_later = (to_example(r, tokenizer) for r in task.records[:2])
    assert (differ_first.answer, differ_first.distractor) == (" Mary", " John")
    assert differ_first.clean == GOOD["clean"]
    # The shared " Mary" moves into both prompts; the next tokens are scored.
    assert differ_later.clean == GOOD["clean"] + " Mary"
    assert differ_later.corrupted == GOOD["corrupted"] + " Mary"
    anne = tokenizer.encode(GOOD["clean"] + " Mary Anne")
    lou = tokenizer.encode(GOOD["clean"] + " Mary Lou")
    at = len(tokenizer.encode(GOOD["clean"] + " Mary"))
    assert differ_later.answer == tokenizer.decode([anne[at]])
    assert differ_later.distractor == tokenizer.decode([lou[at]])


def test_an_answer_that_starts_every_other_is_rejected_with_the_line(tmp_path, tokenizer):
    lines = [GOOD, GOOD, {**GOOD, "answer": " Mary", "distractor": " Mary Lou"}]
    task = custom(tmp_path, lines)
    with pytest.raises(NodepruneError, match=r"data.jsonl:3: answer ' Mary' is the start"):
        task.generate(3, random.Random(0), tokenizer)


def test_an_answer_and_distractor_sharing_the_scored_token_are_rejected(tmp_path, tokenizer):
    line = {**AC, "answers": [" Mary", " John"], "wrong_answers": [" John"]}
    task = CustomTask.from_file(auto_circuit_file(tmp_path, [AC, AC, line]))
    with pytest.raises(NodepruneError, match=r"\(prompts\[2\]\): an answer and a distractor"):
        task.generate(3, random.Random(0), tokenizer)


def test_clean_and_corrupted_of_different_token_length_are_rejected_with_the_line(
    tmp_path, tokenizer
):
    bad = {**GOOD, "corrupted": GOOD["corrupted"] + " and then"}
    task = custom(tmp_path, [GOOD, bad, GOOD])
    with pytest.raises(NodepruneError, match=r"data.jsonl:2: clean and corrupted prompts"):
        task.generate(3, random.Random(0), tokenizer)


def test_answer_sets_score_mean_answer_minus_mean_wrong(tmp_path, tokenizer):
    ac = {**AC, "wrong_answers": [" John", " Sam"]}
    task = CustomTask.from_file(auto_circuit_file(tmp_path, [ac] * 4))
    examples = task.generate_split("train", 2, 0, tokenizer)
    batch = task.encode(examples, tokenizer)
    logits = torch.zeros(len(batch), len(tokenizer))
    ids = {w: tokenizer.encode(w)[0] for w in (" Mary", " John", " Sam")}
    logits[:, ids[" Mary"]], logits[:, ids[" John"]], logits[:, ids[" Sam"]] = 3.0, 1.0, -2.0
    assert torch.allclose(task.metric(logits, batch), torch.full((len(batch),), 3.0 - (-0.5)))


# ---- splits ----------------------------------------------------------------------------


def numbered(i: int) -> dict:
    """A distinct prompt pair per ``i``; the corruption swaps the two names, so the two
    prompts have the same token length for any tokenizer."""
    names = ["Mary", "John", "Alice", "Henry", "Lucy", "Eric", "Sam", "Ben", "Max", "Jane"]
    a, b = names[i % 10], names[(i // 10 + i + 1) % 10]
    return {
        "clean": f"When {a} and {b} went to the store, {b} gave a drink to",
        "corrupted": f"When {b} and {a} went to the store, {a} gave a drink to",
        "answer": f" {a}",
        "distractor": f" {b}",
    }


def test_unlabeled_lines_split_70_10_20_the_same_for_every_seed(tmp_path, tokenizer):
    task = custom(tmp_path, [numbered(i) for i in range(50)])
    pools = {s: {r.where for r in task._pools[s]} for s in ("train", "validation", "test")}
    assert [len(pools[s]) for s in ("train", "validation", "test")] == [35, 5, 10]
    assert not (pools["train"] & pools["test"]) and not (pools["train"] & pools["validation"])
    again = custom(tmp_path, [numbered(i) for i in range(50)])
    assert {r.where for r in again._pools["test"]} == pools["test"]


def test_labeled_lines_go_to_their_split_and_validation_serves_as_test(tmp_path):
    lines = [{**numbered(i), "split": "train"} for i in range(4)]
    lines += [{**numbered(i), "split": "validation"} for i in range(4, 6)]
    task = custom(tmp_path, lines)
    assert [r.where[-1] for r in task._pools["test"]] == ["5", "6"]
    assert task._pools["validation"] == task._pools["test"]


def test_too_few_lines_or_no_train_lines_are_errors(tmp_path):
    with pytest.raises(NodepruneError, match="too few"):
        custom(tmp_path, [GOOD, GOOD])
    with pytest.raises(NodepruneError, match="no train examples"):
        custom(tmp_path, [{**GOOD, "split": "test"}] * 3)


def test_a_split_asked_for_more_than_its_pool_gets_the_whole_pool(tmp_path, tokenizer):
    task = custom(tmp_path, [numbered(i) for i in range(10)])
    assert len(task.generate_split("train", 100, 0, tokenizer)) == len(task._pools["train"])
    first = task.generate_split("train", 3, 0, tokenizer)
    assert first == task.generate_split("train", 3, 0, tokenizer)


def test_resolve_task_prefers_the_file_and_names_it(tmp_path):
    path = write_lines(tmp_path, [numbered(i) for i in range(5)], name="mine.jsonl")
    task = resolve_task("ioi", str(path))
    assert isinstance(task, CustomTask) and task.name == "custom:mine.jsonl"
    assert task.path == str(path)
