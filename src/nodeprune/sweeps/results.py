"""The sweep's result table: one row per trial, streamed to results.json and results.csv.

Rows are keyed by the trial's config hash; a re-run replaces a trial's row. Rows of
trials that are not in the current grid (an earlier sweep into the same folder) stay.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import lam_g_key, setting
from ..curves import mean_kept_fraction
from ..errors import NodepruneError
from ..evaluation import METRIC_KEYS
from ..fsutil import atomic_write, write_json
from ..granularity import GRANULARITIES
from ..run_files import CIRCUIT_FILE, CURVE_PNG, RESULTS_CSV, RESULTS_JSON, TRIALS_DIR
from .grid import FAILED, FINISHED, PLAIN_AXES, axis_names

if TYPE_CHECKING:
    from ..circuit import Circuit
    from .grid import Trial


def circuit_relpath(digest: str) -> str:
    return f"{TRIALS_DIR}/{digest}/{CIRCUIT_FILE}"


def _base_row(trial: Trial, status: str, wall: float, worker: str) -> dict[str, Any]:
    return {
        "hash": trial.hash,
        "status": status,
        "error": "",
        "axes": trial.axes,
        "config": trial.config,
        "metrics": {},
        "kept": {},
        "total": {},
        "kept_fraction": {},
        "mean_kept_fraction": None,
        "wall_s": round(wall, 3),
        "worker": worker,
        "circuit": None,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def finished_row(trial: Trial, circuit: Circuit, wall: float, worker: str) -> dict[str, Any]:
    row = _base_row(trial, FINISHED, wall, worker)
    row["metrics"] = dict(circuit.metrics)
    row["kept"] = {g: circuit.kept(g) for g in circuit.enabled}
    row["total"] = {g: circuit.total(g) for g in circuit.enabled}
    row["kept_fraction"] = {g: row["kept"][g] / row["total"][g] for g in circuit.enabled}
    # Not the curves' fraction_kept (units kept): see curves.mean_kept_fraction.
    row["mean_kept_fraction"] = mean_kept_fraction(row["kept"], row["total"])
    timings = getattr(circuit, "timings", None) or circuit.extra
    row["train_s"] = timings.get("train_seconds")
    row["circuit"] = circuit_relpath(trial.hash)
    return row


def failed_row(
    trial: Trial, error: str, wall: float, worker: str, detail: str = ""
) -> dict[str, Any]:
    row = _base_row(trial, FAILED, wall, worker)
    row["error"] = error
    if detail:
        row["traceback"] = detail
    return row


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return value


#: /2: a row's size is ``mean_kept_fraction`` (in /1 it was called ``fraction_kept``, the
#: name the curves use for another measure: units kept).
SWEEP_FORMAT = "nodeprune-sweep/2"


def upgraded_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row read from an older results.json, in this format's names."""
    if "fraction_kept" in row and "mean_kept_fraction" not in row:
        row = dict(row)
        row["mean_kept_fraction"] = row.pop("fraction_kept")
    return row


class ResultTable:
    """The rows of one sweep folder, written out after every change."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.rows: dict[str, dict[str, Any]] = {}
        path = self.out / RESULTS_JSON
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self.rows = {str(r["hash"]): upgraded_row(r) for r in data["trials"]}
            except (ValueError, RecursionError, KeyError, TypeError) as exc:
                raise NodepruneError(
                    f"{path} is not a nodeprune sweep table ({exc}); "
                    "choose another --out folder or remove the file"
                ) from exc

    def is_finished(self, digest: str) -> bool:
        row = self.rows.get(digest)
        return (
            row is not None
            and row.get("status") == FINISHED
            and (self.out / circuit_relpath(digest)).is_file()
        )

    def counts(self) -> dict[str, int]:
        out = {FINISHED: 0, FAILED: 0}
        for row in self.rows.values():
            out[row["status"]] = out.get(row["status"], 0) + 1
        return out

    def record(self, row: dict[str, Any], circuit_json: dict[str, Any] | None) -> None:
        """Store a finished or failed trial: its circuit first, then the tables."""
        if circuit_json is not None:
            path = self.out / circuit_relpath(row["hash"])
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, circuit_json)
        self.rows[row["hash"]] = row
        self.write()

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        rows = list(self.rows.values())
        table = {"format": SWEEP_FORMAT, "counts": self.counts(), "trials": rows}
        write_json(self.out / RESULTS_JSON, table)
        atomic_write(self.out / RESULTS_CSV, self.csv_text())
        from .plot import write_curve

        write_curve(rows, self.out / CURVE_PNG)

    def csv_columns(self) -> list[str]:
        swept = {name for row in self.rows.values() for name in row.get("axes", {})}
        axes = [*PLAIN_AXES, *(a for a in axis_names() if a not in PLAIN_AXES and a in swept)]
        return [
            "hash",
            "status",
            *axes,
            *METRIC_KEYS,
            "mean_kept_fraction",
            *(f"kept_fraction.{g}" for g in GRANULARITIES),
            *(f"kept.{g}" for g in GRANULARITIES),
            "wall_s",
            "worker",
            "error",
        ]

    def csv_text(self) -> str:
        columns = self.csv_columns()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in self.rows.values():
            flat: dict[str, Any] = {}
            for column in columns:
                prefix, _, key = column.partition(".")
                if column in PLAIN_AXES or lam_g_key(column) is not None:
                    flat[column] = setting(row["config"], column)
                elif column in METRIC_KEYS:
                    flat[column] = row["metrics"].get(column)
                elif prefix in ("kept_fraction", "kept") and key:
                    flat[column] = row[prefix].get(key)
                else:
                    flat[column] = row.get(column)
            writer.writerow({k: _csv_value(v) for k, v in flat.items()})
        return buffer.getvalue()
