"""The output folder of a ``nodeprune discover`` run: one run at a time, refusing to
clobber, never losing the run it replaces, resuming, and writing the result under a
name that says what it is.

Files in a run folder:

* ``circuit.json``: the result.
* ``circuit.empty.json``: written *instead of* ``circuit.json`` when every node inside
  the layers was pruned (the command then exits with status 3), so that an empty
  circuit is never picked up as a normal result; ``--allow-empty`` writes it as
  ``circuit.json`` (with the warning) and exits 0.
* ``checkpoint.safetensors`` + ``checkpoint.json``: the run state (see checkpoint.py),
  written every ``--checkpoint-every`` steps, after the last step and on SIGINT/SIGTERM.
* ``.nodeprune.lock`` (while a run is on): who runs there (see runlock.py); a second
  run into the folder is refused.
* ``.nodeprune-replaced/`` (while an ``--overwrite`` run has produced nothing yet): the
  run it replaces. It is removed once the new run has written its first checkpoint or
  its result, and put back if the new run fails before that (a model that does not
  load, a bad task file, no example left after filtering, Ctrl-C, a kill -9: the next
  command in the folder puts it back).

A circuit that prunes nothing is written as ``circuit.json`` with a prominent warning:
it is a valid, if uninformative, result. When ``circuit.json`` cannot be written (disk
full...), the circuit goes to a file in the temporary folder, named in the error, and
the final checkpoint lets ``--resume`` write it again.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .checkpoint import (
    TASK_CHECKSUM,
    CheckpointWriteError,
    checkpoint_files,
    config_differences,
    has_checkpoint,
    read_meta,
)
from .circuit import Circuit
from .config import DiscoveryConfig, merge_settings
from .errors import NodepruneError
from .fsutil import WriteError, atomic_write, check_writable, sha256_file, sync_folder, warn
from .run_files import (
    ASIDE_DIR,
    CIRCUIT_FILE,
    EMPTY_CIRCUIT_FILE,
    MOVING_ASIDE_DIR,
    MOVING_BACK_DIR,
)
from .runlock import FolderLock
from .summary import circuit_status, circuit_summary, status_warning

if TYPE_CHECKING:
    from .discovery import Discovery

#: Exit status of ``discover`` when the circuit came out empty (without --allow-empty).
EXIT_EMPTY = 3
#: Key of ``Circuit.extra`` with the SHA-256 of the task file the circuit was found on.
TASK_FILE_SHA256 = TASK_CHECKSUM  # the same key in checkpoints and circuits


def result_files(out: Path) -> list[Path]:
    return [out / CIRCUIT_FILE, out / EMPTY_CIRCUIT_FILE, out / (CIRCUIT_FILE + ".tmp")]


def run_files(out: Path) -> list[Path]:
    """Everything that makes a folder hold a run (links too: they are moved, not read)."""
    return [p for p in result_files(out) + checkpoint_files(out) if os.path.lexists(p)]


def has_product(out: Path) -> bool:
    """Has a run written something worth keeping here: a checkpoint or a result?"""
    return has_checkpoint(out) or any(
        (out / name).is_file() for name in (CIRCUIT_FILE, EMPTY_CIRCUIT_FILE)
    )


class RunFolder:
    """``discover``'s output folder while a run uses it: checked writable, locked, and
    with the run an ``--overwrite`` replaces kept aside until the new one has produced
    something (:meth:`settle`), or put back when it ends without having done so."""

    def __init__(self, out: Path, resume: bool = False, overwrite: bool = False) -> None:
        if resume and overwrite:
            raise NodepruneError(
                "--resume continues the run in the output folder and --overwrite replaces "
                "it; pass only one of them"
            )
        self.out, self.resume, self.overwrite = out, resume, overwrite
        self.aside = out / ASIDE_DIR
        self.lock = FolderLock(out)
        self.created = False
        self._keeping = False

    def __enter__(self) -> RunFolder:
        self.created = not os.path.lexists(self.out)
        try:
            check_writable(self.out, "the output folder (--out)")
            self.lock.acquire()
            self._recover()
            self._prepare()
        except BaseException:
            # Ctrl-C can land anywhere, even half-way through moving the old run aside:
            # whatever was moved goes back (a process killed here leaves that to the next).
            try:
                if self.lock.held:
                    self._recover()
            finally:
                self._close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._keeping:
                if has_product(self.out):
                    self._drop_aside()
                else:
                    self._restore()
        finally:
            self._close()

    def settle(self, *_: object) -> None:
        """Drop the replaced run once the new one has a checkpoint or a result (an
        ``on_step`` callback: a file check per step)."""
        if self._keeping and has_product(self.out):
            self._drop_aside()

    def _own_folder(self, folder: Path) -> bool:
        if not os.path.lexists(folder):
            return False
        if folder.is_symlink() or not folder.is_dir():
            raise NodepruneError(
                f"{folder} is not a folder that nodeprune made (a link or a file); "
                "move it away and run again"
            )
        return True

    def _recover(self) -> None:
        """A process killed while it kept a replaced run aside: finish its job. Moving
        files in or out happens in a folder of its own name, renamed (atomically) when
        done, so a kill half-way through a move is always undone, never taken for a
        finished one."""
        for moving in (self.out / MOVING_ASIDE_DIR, self.out / MOVING_BACK_DIR):
            if self._own_folder(moving):
                self._move_back(moving)
        if not self._own_folder(self.aside):
            return
        self._keeping = True
        if has_product(self.out):
            self._drop_aside()
        else:
            self._restore()

    def _prepare(self) -> None:
        if self.resume:
            if not has_checkpoint(self.out):
                raise NodepruneError(
                    f"--resume: there is no checkpoint in {self.out}; run without --resume to start"
                )
            return
        existing = run_files(self.out)
        if existing and not self.overwrite:
            raise NodepruneError(
                f"{self.out} already holds a run ({', '.join(p.name for p in existing)}); "
                "pass --resume to continue it or --overwrite to start over"
            )
        if not existing:
            return
        # --overwrite: out of the way at once (so it is never resumed by mistake), but
        # kept until the new run has something to show for itself.
        moving = self.out / MOVING_ASIDE_DIR
        moving.mkdir()
        for p in existing:
            os.replace(p, moving / p.name)
        os.replace(moving, self.aside)
        self._keeping = True
        sync_folder(self.out)

    def _drop_aside(self) -> None:
        shutil.rmtree(self.aside, ignore_errors=True)
        self._keeping = False

    def _restore(self) -> None:
        for p in run_files(self.out):  # what the failed new run left: temporary files
            p.unlink()
        moving = self.out / MOVING_BACK_DIR
        os.replace(self.aside, moving)
        self._move_back(moving)
        self._keeping = False
        print(
            f"nodeprune: the new run produced nothing, so {self.out} keeps the run it held",
            file=sys.stderr,
        )

    def _move_back(self, moving: Path) -> None:
        for p in sorted(moving.iterdir()):
            os.replace(p, self.out / p.name)
        moving.rmdir()
        sync_folder(self.out)

    def _close(self) -> None:
        self.lock.release()
        if self.created:
            try:
                self.out.rmdir()  # only if empty: a run that never started leaves no folder
            except OSError:
                pass


def resumed_config(out: Path, given: dict[str, Any], source: str) -> DiscoveryConfig:
    """The checkpoint's config. Settings given again (flags, --config) must agree with it."""
    meta = read_meta(out)
    saved = DiscoveryConfig.from_saved(meta.get("config") or {}, f"{out} checkpoint").validate()
    now = DiscoveryConfig.from_dict(merge_settings(saved.to_dict(), given), source).validate()
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
    """Save the circuit under the name its state calls for; the exit status. (A task
    file's checksum is already in the circuit: Discovery.circuit() stamps it.)"""
    print(circuit_summary(circuit))
    status, warning = circuit_status(circuit), status_warning(circuit)
    if status == "empty" and not allow_empty:
        path = save_result(circuit, out, EMPTY_CIRCUIT_FILE)
        print(
            banner(f"EMPTY CIRCUIT: {warning}")
            + f"\nwrote it to {path}, not to {CIRCUIT_FILE}; pass --allow-empty to accept "
            "an empty circuit as the result",
            file=sys.stderr,
        )
        return EXIT_EMPTY
    path = save_result(circuit, out, CIRCUIT_FILE)
    if warning:
        print(banner(f"{status.upper()} CIRCUIT: {warning}"), file=sys.stderr)
    print(f"\nwrote {path}")
    return 0


def fallback_folders() -> list[Path]:
    """Where a circuit goes when its run folder cannot take it, best first."""
    return [Path(tempfile.gettempdir()), Path.home(), Path.cwd()]


def save_result(circuit: Circuit, out: Path, name: str) -> Path:
    """``out``/``name``; when that write fails, the circuit is kept in a fallback file
    and the error names it (and how to write the result again)."""
    try:
        return circuit.save(out / name, root=out)
    except WriteError as exc:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        label = "".join(c if c.isalnum() or c in "-_." else "_" for c in out.name) or "run"
        text = None
        tried = []
        for folder in fallback_folders():
            target = folder / f"nodeprune-{label}-{stamp}-{os.getpid()}-{name}"
            try:
                text = text or _circuit_text(circuit)
                kept = atomic_write(target, text)
                break
            except WriteError as again:
                tried.append(f"{folder}: {again.reason}")
        else:
            kept = None
        where = (
            f"the trained circuit was written to {kept} instead"
            if kept
            else f"no fallback folder could take the circuit either ({'; '.join(tried)})"
        )
        again = ""
        if has_checkpoint(out):
            again = (
                f"; the checkpoint in {out} holds the trained gates: once {out} can be "
                f"written, `nodeprune discover --out {shlex.quote(str(out))} --resume` "
                f"writes {name} again"
            )
        raise WriteError(f"{exc}; {where}{again}", exc.path, exc.errno, exc.reason) from exc


def _circuit_text(circuit: Circuit) -> str:
    import json

    return json.dumps(circuit.to_json(), indent=1) + "\n"


def train(
    discovery: Discovery,
    out: Path,
    progress: bool,
    checkpoint_every: int,
    on_step: Callable[[Discovery], None] | None = None,
) -> Circuit:
    """Run the discovery with checkpoints in ``out``. A checkpoint that cannot be
    written stops the run (the message names the last good one), except the final one:
    then training is complete, and the circuit is still read off and written."""
    try:
        return discovery.run(
            progress=progress,
            checkpoint_dir=out,
            checkpoint_every=checkpoint_every,
            on_step=on_step,
        )
    except CheckpointWriteError as exc:
        if discovery.step < discovery.config.steps:
            raise
        warn(f"{exc}; training is complete, so the circuit is written all the same")
        return discovery.circuit()


def check_circuit_task_file(circuit: Circuit, source: str | Path) -> None:
    """A circuit found on a task file is evaluated on that file as it was: refuse a file
    whose content changed since (the test prompts, even the answer, would differ)."""
    task_file = circuit.config.get("task_file")
    if not task_file or not Path(task_file).is_file():
        return  # a built-in task; or a missing file, which loading the task reports
    saved, now = circuit.extra.get(TASK_FILE_SHA256), sha256_file(task_file)
    if saved is None:
        warn(
            f"{source} does not record the SHA-256 of its task file {task_file} (written by "
            "an older nodeprune or outside `nodeprune discover`): an edit of the file since "
            "the discovery cannot be detected"
        )
    elif saved != now:
        raise NodepruneError(
            f"the task file {task_file} has changed since {source} was discovered on it "
            f"(SHA-256 {str(saved)[:12]}... then, {now[:12]}... now), so its prompts are no "
            "longer the circuit's; evaluate with the original file, or discover again"
        )
