"""Nothing is written through a symbolic link planted in a run folder: links at the
temporary files are removed, links at the files are replaced, linked folders refused;
the files the links point to, outside the run folder, are never touched."""

from __future__ import annotations

import os
import signal

import pytest
from run_folder_helpers import FAST, checkpoint_step, one_error, run, start, wait_until

from nodeprune.checkpoint import META_FILE, TENSORS_FILE
from nodeprune.circuit import Circuit
from nodeprune.cli import main
from nodeprune.runs import CIRCUIT_FILE


@pytest.fixture(scope="session")
def model_dir(tiny_llama_dir):
    return tiny_llama_dir


def _targets(tmp_path, names):
    outside = tmp_path / "outside"
    outside.mkdir()
    targets = {}
    for name in names:
        targets[name] = outside / f"target-of-{name}"
        targets[name].write_text(f"precious {name}")
    return targets


def _untouched(targets) -> bool:
    return all(t.read_text() == f"precious {name}" for name, t in targets.items())


def test_links_planted_in_a_running_run_folder_are_never_written_through(model_dir, tmp_path):
    out, log = tmp_path / "run", tmp_path / "run.log"
    names = [META_FILE + ".tmp", TENSORS_FILE + ".tmp", CIRCUIT_FILE + ".tmp", CIRCUIT_FILE]
    targets = _targets(tmp_path, names)
    flags = [a for a in FAST if a not in ("--steps", "4")]
    argv = ["discover", "--model", str(model_dir), "--out", str(out), *flags, "--lam", "0",
            "--steps", "20", "--checkpoint-every", "1"]  # fmt: skip
    proc = start(argv, log)
    wait_until(proc, lambda: checkpoint_step(out) >= 1, log, "the first checkpoint")
    proc.send_signal(signal.SIGSTOP)  # planted between two writes, not during one
    try:
        while any(os.path.lexists(out / n) for n in names[:2]):
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGSTOP)
        for name, target in targets.items():
            (out / name).symlink_to(target)
    finally:
        proc.send_signal(signal.SIGCONT)
    assert proc.wait(timeout=300) == 0, log.read_text()
    assert _untouched(targets)
    assert not (out / CIRCUIT_FILE).is_symlink()
    assert Circuit.load(out / CIRCUIT_FILE).config["steps"] == 20
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_report_replaces_a_linked_report_and_refuses_a_linked_figures_folder(
    model_dir, tmp_path, capsys
):
    out = tmp_path / "run"
    assert run(model_dir, out, "--lam", "0") == 0
    targets = _targets(tmp_path, ["report.html", "stability.json"])
    (out / "report.html").symlink_to(targets["report.html"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "figures").symlink_to(elsewhere, target_is_directory=True)
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    assert "figures is a symbolic link" in one_error(capsys)
    assert list(elsewhere.iterdir()) == [] and _untouched(targets)
    (out / "figures").unlink()
    assert main(["report", str(out)]) == 0
    assert _untouched(targets)
    assert not (out / "report.html").is_symlink() and "<html" in (out / "report.html").read_text()
    assert (out / "figures").is_dir() and not (out / "figures").is_symlink()
    (tmp_path / "stability.json").symlink_to(targets["stability.json"])
    assert main(["stability", str(out), str(out), "--out", str(tmp_path / "stability.json")]) == 0
    assert _untouched(targets) and not (tmp_path / "stability.json").is_symlink()


def test_export_replaces_a_link_at_its_output(model_dir, tmp_path):
    out = tmp_path / "run"
    assert run(model_dir, out, "--lam", "0") == 0
    targets = _targets(tmp_path, ["hooks.json"])
    (tmp_path / "hooks.json").symlink_to(targets["hooks.json"])
    export = ["export", str(out), "--format", "tl-hooks", "--out", str(tmp_path / "hooks.json")]
    assert main(export) == 0
    assert _untouched(targets) and not (tmp_path / "hooks.json").is_symlink()
