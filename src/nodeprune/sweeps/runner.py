"""Run a sweep: skip the trials already finished, run the rest, stream the results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..fsutil import write_json
from ..run_files import SWEEP_FILE
from .backends import Backend
from .grid import SweepSpec
from .results import FAILED, FINISHED, ResultTable


@dataclass
class SweepReport:
    total: int
    skipped: int
    finished: int
    failed: int
    out: Path

    def summary(self) -> str:
        return (
            f"{self.total} trials: {self.skipped} already finished (skipped), "
            f"{self.finished} finished, {self.failed} failed; results in {self.out}"
        )


def run_sweep(
    spec: SweepSpec, out: str | Path, backend: Backend, progress: bool = True
) -> SweepReport:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trials = spec.trials()
    table = ResultTable(out)
    todo = [t for t in trials if not table.is_finished(t.hash)]
    write_json(out / SWEEP_FILE, {**spec.to_dict(), "trials": [t.hash for t in trials]})
    counts = {FINISHED: 0, FAILED: 0}
    bar = tqdm(total=len(todo), desc=f"sweep ({backend.name})", unit="trial", disable=not progress)
    bar.set_postfix(finished=0, failed=0, skipped=len(trials) - len(todo))

    def on_result(row: dict[str, Any], circuit_json: dict[str, Any] | None) -> None:
        table.record(row, circuit_json)
        counts[row["status"]] += 1
        bar.update(1)
        bar.set_postfix(
            finished=counts[FINISHED], failed=counts[FAILED], skipped=len(trials) - len(todo)
        )
        if row["status"] == FAILED:
            bar.write(f"trial {row['hash']} {row['axes']} failed: {row['error']}")

    try:
        if todo:
            backend.run(todo, on_result)
        else:
            table.write()  # nothing to run: still (re)draw the table and the curve
    finally:
        bar.close()
    return SweepReport(len(trials), len(trials) - len(todo), counts[FINISHED], counts[FAILED], out)
