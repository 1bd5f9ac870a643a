"""What a run folder holds: circuit.json, and optionally compare.json, curves.json,
stability.json and the edge phase's edges/edge_circuit.json, each checked so a malformed
file gets a one-line error."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..circuit import Circuit
from ..errors import NodepruneError
from ..run_files import CIRCUIT_FILE, COMPARE_FILE, CURVES_FILE, STABILITY_FILE


@dataclass
class RunData:
    folder: Path
    circuit: Circuit
    compare: list[dict[str, Any]] | None = None
    curves: dict[str, Any] | None = None
    stability: dict[str, Any] | None = None
    #: The edge circuit ``nodeprune edges`` wrote for this circuit, if any.
    edges: Any = None
    #: Why there is none, or which it is.
    edges_note: str = ""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise NodepruneError(
            f"{path}: not valid JSON ({exc}); rerun the step that wrote it"
        ) from exc


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_compare(data: Any, source: str) -> list[dict[str, Any]]:
    if not isinstance(data, list):
        raise NodepruneError(f"{source}: expected a list of methods, got {type(data).__name__}")
    for i, row in enumerate(data):
        if not isinstance(row, dict) or not isinstance(row.get("method"), str):
            raise NodepruneError(f"{source}: entry {i} has no 'method' name")
        for key in ("kept", "metrics"):
            if not isinstance(row.get(key, {}), dict):
                raise NodepruneError(
                    f"{source}: entry {i} ({row['method']}): {key!r} must be an object"
                )
    return data


def check_curves(data: Any, source: str) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("methods"), dict):
        raise NodepruneError(f"{source}: expected an object with a 'methods' object")
    for method, points in data["methods"].items():
        if not isinstance(points, list):
            raise NodepruneError(f"{source}: methods.{method} must be a list of points")
        for p in points:
            if not (
                isinstance(p, dict)
                and _number(p.get("fraction_kept"))
                and _number(p.get("normalized_faithfulness"))
            ):
                raise NodepruneError(
                    f"{source}: methods.{method} has a point without numeric fraction_kept "
                    "and normalized_faithfulness"
                )
    area = data.get("area", {})
    if not isinstance(area, dict) or not all(
        isinstance(a, dict) and _number(a.get("cpr")) and _number(a.get("cmd"))
        for a in area.values()
    ):
        raise NodepruneError(f"{source}: 'area' must map each method to numeric cpr and cmd")
    return data


def check_stability(data: Any, source: str) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("granularities"), dict):
        raise NodepruneError(f"{source}: not a stability file (rerun nodeprune stability)")
    return data


def load_run(folder: str | Path) -> RunData:
    path = Path(folder)
    if path.is_file() and path.name.endswith(".json"):
        path = path.parent
    if not path.is_dir():
        raise NodepruneError(f"run folder {path} does not exist")
    circuit_file = path / CIRCUIT_FILE
    if not circuit_file.is_file():
        raise NodepruneError(
            f"{path} holds no circuit.json; give the --out folder of nodeprune discover"
        )
    run = RunData(path, Circuit.load(circuit_file))
    checks = (
        (COMPARE_FILE, "compare", check_compare),
        (CURVES_FILE, "curves", check_curves),
        (STABILITY_FILE, "stability", check_stability),
    )
    for name, attr, check in checks:
        file = path / name
        if file.is_file():
            setattr(run, attr, check(_read_json(file), str(file)))
    from ..edges.circuit import edge_circuit_for

    run.edges, run.edges_note = edge_circuit_for(run.circuit, path)
    return run
