"""Time to a circuit: the whole `nodeprune discover` command, as a user waits for it.

Runs the command (the demo's by default: SmolLM2-135M, IOI, every default) ``--runs``
times, each in a fresh process, and reports for each the wall time of the process
(interpreter start, imports and model load included) next to the phases the circuit
file records (`timings`: set-up, training and the validation measurements inside it,
the target's selection, the test evaluation) and the test faithfulness with its
interval. The first run may fill caches (the dequantised model); the later ones are
what a returning user waits for.

    python bench/time_to_circuit.py                       # the demo, twice
    python bench/time_to_circuit.py --runs 1 -- --batch-size 16   # extra discover flags
    python bench/time_to_circuit.py --runs 1 --variant "fp32=--autocast off" \
        --variant "auto=--autocast auto"      # settings side by side, run in turn

Check that nothing else runs first (`ps`, `uptime`): on these 2 cores a second process
slows both several times over.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = ("setup_seconds", "train_seconds", "measure_seconds", "selection_seconds", "test_seconds")


def one_run(flags: list[str], out: Path) -> dict:
    command = [
        sys.executable,
        "-m",
        "nodeprune",
        "discover",
        "--model",
        "smollm2-135m",
        "--task",
        "ioi",
        "--out",
        str(out),
        "--overwrite",
        "--quiet",
        *flags,
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    circuit = json.loads((out / "circuit.json").read_text(encoding="utf-8"))
    metrics = circuit["metrics"]
    return {
        "wall_s": round(wall, 1),
        **{k: circuit.get("timings", {}).get(k) for k in PHASES},
        "test_faithfulness": metrics["normalized_faithfulness"],
        "interval": [
            metrics["normalized_faithfulness_low"],
            metrics["normalized_faithfulness_high"],
        ],
        "heads": circuit["granularities"]["attention_head"]["kept"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL=FLAGS",
        help="a labelled set of extra discover flags; variants run in turn, --runs rounds",
    )
    p.add_argument("flags", nargs="*", help="extra `discover` flags, after --")
    args = p.parse_args(argv)
    variants = [v.partition("=")[::2] for v in args.variant] or [("", "")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for label, flags in variants:
                out = Path(tmp) / f"run-{i}-{len(rows)}"
                rows.append({"variant": label, **one_run([*flags.split(), *args.flags], out)})
                print(f"run {i + 1} {label}: {rows[-1]}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        "| run | variant | wall s | set-up | training (of it measurements) | selection | test | "
        "test faithfulness | heads |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|---:|")
    for i, r in enumerate(rows, 1):
        low, high = r["interval"]
        print(
            f"| {i} | {r['variant'] or '-'} | {r['wall_s']:.0f} | {r['setup_seconds']:.0f} | "
            f"{r['train_seconds']:.0f} "
            f"({r['measure_seconds']:.0f}) | {r['selection_seconds']:.0f} | "
            f"{r['test_seconds']:.0f} | {r['test_faithfulness']:.3f} ({low:.3f}-{high:.3f}) | "
            f"{r['heads']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
