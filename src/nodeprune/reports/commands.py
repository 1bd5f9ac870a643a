"""The ``report``, ``export`` and ``stability`` subcommands of ``nodeprune``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_report(args: argparse.Namespace) -> int:
    from ..extras import require

    require("matplotlib", "nodeprune report (its figures)")
    from .build import build_report

    path = build_report(args.run_dir, args.runs)
    print(f"wrote {path} (figures in {path.parent / 'figures'})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..circuit import Circuit
    from ..export import export_circuit
    from ..stability import circuit_path

    circuit = Circuit.load(circuit_path(args.circuit))
    data = export_circuit(
        circuit, args.format, parallel_attn_mlp=args.parallel_attn_mlp, neurons=args.neurons
    )
    text = json.dumps(data) + "\n"
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_stability(args: argparse.Namespace) -> int:
    from ..stability import load_runs, save_stability, stability, stability_table

    result = stability(load_runs(args.runs), [str(p) for p in args.runs])
    print(stability_table(result))
    if args.out:
        print(f"\nwrote {save_stability(result, args.out)}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``report``, ``export`` and ``stability``."""
    add_report_parser(sub)
    add_export_parser(sub)
    add_stability_parser(sub)


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write RUN_DIR/report.html and figures")
    p.add_argument("run_dir", help="run folder holding circuit.json (compare.json, curves.json)")
    p.add_argument(
        "runs",
        nargs="*",
        help="more run folders of the same task (other seeds): adds a stability section",
    )
    p.set_defaults(func=cmd_report)


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    from ..export import EXPORT_FORMATS  # imports torch: only for `nodeprune export ...`

    p = sub.add_parser("export", help="export a circuit for EAP-IG / MIB or TransformerLens")
    p.add_argument("circuit", help="circuit.json or its run folder")
    p.add_argument("--format", required=True, choices=list(EXPORT_FORMATS), help="output format")
    p.add_argument("--out", help="output file (default: standard output)")
    p.add_argument(
        "--parallel-attn-mlp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="eap-ig: attention and MLP read the same residual stream (default: guessed "
        "from the model name; true for Pythia / GPT-NeoX)",
    )
    p.add_argument(
        "--neurons",
        action="store_true",
        help="eap-ig: add per-d_model neuron masks (MLP output dimensions)",
    )
    p.set_defaults(func=cmd_export)


def add_stability_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stability", help="keep frequency and Jaccard overlap across runs")
    p.add_argument("runs", nargs="+", help="two or more run folders (or circuit.json files)")
    p.add_argument("--out", help="write the result as JSON (e.g. RUN_DIR/stability.json)")
    p.set_defaults(func=cmd_stability)
