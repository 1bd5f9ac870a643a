"""The output folder of a ``nodeprune discover`` run: refusing to clobber, resuming,
and writing the result under a name that says what it is.

Files in a run folder:

* ``circuit.json``: the result.
* ``circuit.empty.json``: written *instead of* ``circuit.json`` when every node inside
  the layers was pruned (the command then exits with status 3), so that an empty
  circuit is never picked up as a normal result; ``--allow-empty`` writes it as
  ``circuit.json`` (with the warning) and exits 0.
* ``checkpoint.safetensors`` + ``checkpoint.json``: the run state (see checkpoint.py),
  written every ``--checkpoint-every`` steps, after the last step and on SIGINT/SIGTERM.

A circuit that prunes nothing is written as ``circuit.json`` with a prominent warning:
it is a valid, if uninformative, result.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from .checkpoint import checkpoint_files, config_differences, has_checkpoint, read_meta
from .circuit import Circuit
from .config import DiscoveryConfig
from .errors import NodepruneError
from .summary import circuit_status, circuit_summary, status_warning

CIRCUIT_FILE = "circuit.json"
EMPTY_CIRCUIT_FILE = "circuit.empty.json"
#: Exit status of ``discover`` when the circuit came out empty (without --allow-empty).
EXIT_EMPTY = 3


def result_files(out: Path) -> list[Path]:
    return [out / CIRCUIT_FILE, out / EMPTY_CIRCUIT_FILE, out / (CIRCUIT_FILE + ".tmp")]


def prepare_output(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to mix two runs in one folder unless told to continue or replace."""
    if resume and overwrite:
        raise NodepruneError(
            "--resume continues the run in the output folder and --overwrite replaces it; "
            "pass only one of them"
        )
    if resume:
        if not has_checkpoint(out):
            raise NodepruneError(
                f"--resume: there is no checkpoint in {out}; run without --resume to start"
            )
        return
    existing = [p for p in result_files(out) + checkpoint_files(out) if p.exists()]
    if existing and not overwrite:
        raise NodepruneError(
            f"{out} already holds a run ({', '.join(p.name for p in existing)}); pass "
            "--resume to continue it or --overwrite to start over"
        )
    for p in existing:  # --overwrite: a stale checkpoint must never be resumed by mistake
        p.unlink()


def resumed_config(out: Path, given: dict[str, Any], source: str) -> DiscoveryConfig:
    """The checkpoint's config. Settings given again (flags, --config) must agree with it."""
    meta = read_meta(out)
    saved = DiscoveryConfig.from_dict(meta.get("config") or {}, f"{out} checkpoint").validate()
    merged: dict[str, Any] = {**saved.to_dict(), **given}
    merged["lam_g"] = {**saved.lam_g, **dict(given.get("lam_g") or {})}
    now = DiscoveryConfig.from_dict(merged, source).validate()
    diffs = config_differences(saved.to_dict(), now.to_dict())
    if diffs:
        raise NodepruneError(
            f"--resume: the settings given differ from the checkpoint's in {out}: "
            f"{'; '.join(diffs)}; drop them to resume, or start over with --overwrite"
        )
    return saved


def resume_hint(out: Path) -> str:
    return (
        f"resume with the same command plus --resume (nodeprune discover --out "
        f"{shlex.quote(str(out))} --resume)"
    )


def banner(text: str) -> str:
    line = "!" * min(100, max(40, len(text) + 4))
    return f"{line}\n! {text}\n{line}"


def write_result(circuit: Circuit, out: Path, allow_empty: bool) -> int:
    """Save the circuit under the name its state calls for; the exit status."""
    print(circuit_summary(circuit))
    status, warning = circuit_status(circuit), status_warning(circuit)
    if status == "empty" and not allow_empty:
        path = circuit.save(out / EMPTY_CIRCUIT_FILE)
        print(
            banner(f"EMPTY CIRCUIT: {warning}")
            + f"\nwrote it to {path}, not to {CIRCUIT_FILE}; pass --allow-empty to accept "
            "an empty circuit as the result",
            file=sys.stderr,
        )
        return EXIT_EMPTY
    path = circuit.save(out / CIRCUIT_FILE)
    if warning:
        print(banner(f"{status.upper()} CIRCUIT: {warning}"), file=sys.stderr)
    print(f"\nwrote {path}")
    return 0
