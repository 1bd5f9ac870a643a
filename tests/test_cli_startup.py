"""The command starts light: ``nodeprune --help``, a subcommand's help and argument errors
import neither torch nor transformers nor any optional package (that is what makes them
answer in a fraction of a second), and a missing optional package is a one-line error
naming the extra to install."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nodeprune.cli import COMMANDS, build_parser, main
from nodeprune.errors import NodepruneError

HEAVY = ("torch", "transformers", "numpy", "matplotlib", "ray", "accelerate", "gguf")

_PROBE = """
import json, sys
from nodeprune.cli import main
try:
    main(json.loads(sys.argv[1]))
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in json.loads(sys.argv[2]))))
"""


def heavy_imports(argv: list[str], env: dict[str, str] | None = None) -> list[str]:
    """The heavy modules that running ``nodeprune ARGV`` imports, in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argv), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        [],
        ["no-such-command"],
        ["discover", "--help"],
        ["discover", "--no-such-flag"],
        ["discover", "--steps", "many"],
        ["evaluate", "--help"],
        ["sweep", "--help"],
        ["sweep", "--lam"],
        ["report", "--help"],
        ["stability", "--help"],
        ["tasks", "--help"],
        # The commands that run models answer their bad input before importing torch.
        ["export", "--help"],
        ["export", "missing-run-folder", "--format", "eap-ig"],
        ["export", "x.json", "--format", "bogus"],
        ["compare", "--help"],
        ["compare", "--methods", "bogus"],
        ["compare", "--lam", "2"],
        ["discover", "--lam", "2"],
        ["discover", "--target-faithfulness", "1.5"],
        ["discover", "--task", "no-such-task"],
        ["discover", "--task-file", "no-such-file.jsonl"],
    ],
    ids=lambda argv: " ".join(argv) or "no-arguments",
)
def test_help_and_argument_errors_import_nothing_heavy(argv):
    assert heavy_imports(argv) == []


def test_import_nodeprune_is_light_and_its_names_still_work():
    done = subprocess.run(
        [sys.executable, "-c", "import sys, nodeprune; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "False"
    import nodeprune

    assert nodeprune.Circuit.__name__ == "Circuit"
    assert nodeprune.DiscoveryConfig().steps > 0
    assert callable(nodeprune.load_model) and callable(nodeprune.discover)
    assert set(nodeprune.__all__) <= set(dir(nodeprune))
    with pytest.raises(AttributeError):
        nodeprune.no_such_name  # noqa: B018


def test_command_table_matches_each_commands_own_help():
    # The help `nodeprune --help` lists (COMMANDS) is the help each builder registers.
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    registered = {a.dest: a.help for a in sub._choices_actions}
    assert registered == COMMANDS


def test_each_command_still_gets_its_full_parser(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert "usage: nodeprune " + name in capsys.readouterr().out


def test_report_without_matplotlib_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'nodeprune[plots]'" in err, err


@pytest.mark.parametrize("missing", ["gguf", "accelerate"])
def test_gguf_without_its_packages_names_the_extra(tmp_path, monkeypatch, missing):
    from nodeprune.models import load_model

    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + bytes(56))  # a v3 header
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(NodepruneError, match=rf"needs {missing}.*nodeprune\[gguf\]"):
        load_model(str(path))


def test_device_map_without_accelerate_names_the_extra(tiny_llama_dir, monkeypatch):
    from nodeprune.models import load_model

    monkeypatch.setitem(sys.modules, "accelerate", None)
    with pytest.raises(NodepruneError, match=r"needs accelerate.*nodeprune\[accelerate\]"):
        load_model(str(tiny_llama_dir), device_map="auto")


def test_an_optional_package_missing_deeper_down_is_one_line(monkeypatch, capsys):
    # A code path that imports an extra without `extras.require` still ends in one line.
    def needs_ray(args):
        raise ModuleNotFoundError("No module named 'ray'", name="ray")

    monkeypatch.setattr("nodeprune.cli.tasks.cmd_tasks", needs_ray)
    assert main(["tasks"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'nodeprune[ray]'" in err, err


def test_tasks_reads_the_cached_tokenizer_without_torch(tmp_path, tokenizer, monkeypatch):
    # Once the default model has been loaded (its dequantised copy cached), `nodeprune
    # tasks` reads the tokenizer.json with the tokenizers library alone.
    import os

    from nodeprune.builtin_models import BUILTIN_MODELS, CACHE_STAMP, dequantised_folder

    monkeypatch.setenv("NODEPRUNE_CACHE", str(tmp_path))
    folder = dequantised_folder(BUILTIN_MODELS["smollm2-135m"].gguf())
    tokenizer.save_pretrained(folder)
    (folder / CACHE_STAMP).write_text("sha\n")
    assert heavy_imports(["tasks"], env=dict(os.environ)) == []
