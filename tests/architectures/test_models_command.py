"""``nodeprune models`` lists every registered model type, and the README shows its table."""

from __future__ import annotations

from pathlib import Path

from nodeprune.architectures import ADAPTERS
from nodeprune.architectures.listing import models_table
from nodeprune.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def test_models_lists_every_registered_type(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for model_type in ADAPTERS:
        assert model_type in out
    assert "model.layers.N.self_attn.o_proj" in out


def test_the_readme_table_is_the_commands():
    assert models_table(markdown=True) in README.read_text(), (
        "README's Architectures table is stale: paste `nodeprune models --markdown`"
    )


def test_the_builtin_models_are_listed_and_in_the_readme(capsys):
    from nodeprune.architectures.listing import builtin_table
    from nodeprune.builtin_models import BUILTIN_MODELS

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for model in BUILTIN_MODELS.values():
        assert model.name in out and model.install in out
    assert builtin_table(markdown=True) in README.read_text(), (
        "README's built-in models table is stale: paste `nodeprune models --markdown`"
    )
