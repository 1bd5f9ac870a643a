"""Property-based tests (hypothesis) of the custom-file loader."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodeprune.errors import NodepruneError
from nodeprune.tasks.custom_file import PREDICT_OPEN, load_records

# Any text, including quotes, backslashes, newlines and non-ASCII, but not the
# Edge Pruning marker (which would make the line an Edge Pruning line).
text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40
).filter(lambda s: PREDICT_OPEN not in s)
prompt = text.filter(lambda s: s.strip())
record = st.fixed_dictionaries(
    {"clean": prompt, "corrupted": prompt, "answer": text, "distractor": text},
    optional={"split": st.sampled_from(["train", "validation", "test", "val", "TEST"])},
)
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(records=st.lists(record, min_size=1, max_size=8), ensure_ascii=st.booleans())
def test_jsonl_round_trip(tmp_path: Path, records, ensure_ascii):
    path = tmp_path / "data.jsonl"
    path.write_text(
        "\n".join(json.dumps(r, ensure_ascii=ensure_ascii) for r in records) + "\n",
        encoding="utf-8",
    )
    file_format, loaded = load_records(path)
    assert file_format == "nodeprune"
    assert len(loaded) == len(records)
    for number, (original, got) in enumerate(zip(records, loaded, strict=True), start=1):
        assert got.where == f"{path}:{number}"
        assert (got.clean, got.corrupted) == (original["clean"], original["corrupted"])
        assert got.answers == (original["answer"],)
        assert got.distractors == (original["distractor"],)
        split = original.get("split")
        expected = {"val": "validation", "TEST": "test"}.get(split, split)
        assert got.split == expected


@SETTINGS
@given(
    prompts=st.lists(
        st.fixed_dictionaries(
            {
                "clean": prompt,
                "corrupt": prompt,
                "answers": st.lists(text, min_size=1, max_size=3),
                "wrong_answers": st.lists(text, min_size=1, max_size=3),
            }
        ),
        min_size=1,
        max_size=6,
    ),
    indent=st.sampled_from([None, 1, 2, 4]),
    broken=st.integers(min_value=0, max_value=5),
)
def test_auto_circuit_round_trip_and_item_lines(tmp_path: Path, prompts, indent, broken):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps({"prompts": prompts}, indent=indent), encoding="utf-8")
    file_format, loaded = load_records(path)
    assert file_format == "auto-circuit"
    assert [r.answers for r in loaded] == [tuple(p["answers"]) for p in prompts]
    assert [r.distractors for r in loaded] == [tuple(p["wrong_answers"]) for p in prompts]

    # Drop a field from one item: the error names the line where that item starts.
    index = broken % len(prompts)
    # Each item gets a first key naming it, to find where it starts independently.
    damaged = [{"id": f"item-{i}", **p} for i, p in enumerate(prompts)]
    del damaged[index]["corrupt"]
    body = json.dumps({"prompts": damaged}, indent=indent)
    path.write_text(body, encoding="utf-8")
    try:
        load_records(path)
    except NodepruneError as exc:
        message = str(exc)
    else:
        raise AssertionError("a missing field was accepted")
    marker_line = next(
        n for n, line in enumerate(body.splitlines(), start=1) if f'"item-{index}"' in line
    )
    # With indentation the opening brace stands on the line above its first key.
    line = 1 if indent is None else marker_line - 1
    assert f"{path}:{line} (prompts[{index}])" in message, message


@SETTINGS
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_load_or_fail_with_one_line_naming_the_file(tmp_path: Path, data):
    path = tmp_path / "junk.jsonl"
    path.write_bytes(data)
    try:
        load_records(path)
    except NodepruneError as exc:
        message = str(exc)
        assert "\n" not in message and str(path) in message


@SETTINGS
@given(
    good=st.lists(record, min_size=0, max_size=4),
    junk=st.text(max_size=30).filter(lambda s: s.strip() and "\n" not in s and "\r" not in s),
)
def test_a_bad_line_is_reported_at_its_own_line(tmp_path: Path, good, junk):
    try:
        parsed = json.loads(junk)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return  # the junk happens to be an object; covered by the field tests
    path = tmp_path / "data.jsonl"
    lines = [json.dumps(r) for r in good] + [junk]
    path.write_text("\n".join(lines), encoding="utf-8")
    if not good:
        # First line not a JSON object: read as one JSON document, still a clear error.
        try:
            load_records(path)
        except NodepruneError as exc:
            assert str(path) in str(exc)
        return
    try:
        load_records(path)
    except NodepruneError as exc:
        assert f"{path}:{len(good) + 1}:" in str(exc)
    else:
        raise AssertionError(f"junk line {junk!r} was accepted")
