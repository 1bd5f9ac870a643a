"""``nodeprune report``, ``export`` and ``stability``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .flags import bounded_int

REPORT_HELP = "write RUN_DIR/report.html and figures"
EXPORT_HELP = "export a circuit for EAP-IG / MIB or TransformerLens"
STABILITY_HELP = "keep frequency and Jaccard overlap across runs"


def cmd_report(args: argparse.Namespace) -> int:
    from ..extras import require

    require("matplotlib", "nodeprune report (its figures)")
    from ..reports.build import build_report

    path = build_report(args.run_dir, args.runs)
    print(f"wrote {path} (figures in {path.parent / 'figures'})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..run_files import existing_circuit_file

    path = existing_circuit_file(args.circuit)  # before torch is imported
    if args.out and args.format != "mib":  # before the work: a folder is no file
        from ..fsutil import check_file_target

        check_file_target(args.out, "export --out")
    from ..circuit import Circuit
    from ..edges.circuit import is_edge_circuit_file
    from ..export import export_circuit, write_export

    options = {"parallel_attn_mlp": args.parallel_attn_mlp, "neurons": args.neurons}
    if is_edge_circuit_file(path):
        if args.format == "mib":  # its node circuit, ranked by its edge gates first
            from ..edges.circuit import EdgeCircuit

            edges = EdgeCircuit.load(path)
            return _export_mib(args, edges.node, path.parent.parent, options, edges)
        return _export_edges(args, path)
    circuit = Circuit.load(path)
    if args.format == "mib":
        return _export_mib(args, circuit, path.parent, options)
    if args.out:
        print(f"wrote {write_export(circuit, args.format, args.out, **options)}", file=sys.stderr)
    else:
        sys.stdout.write(json.dumps(export_circuit(circuit, args.format, **options)) + "\n")
    return 0


def _export_edges(args: argparse.Namespace, path: Path) -> int:
    """An edge circuit (``nodeprune edges``) exports as an EAP-IG graph with its edges."""
    from ..edges.circuit import EdgeCircuit
    from ..edges.export import edge_eap_graph
    from ..errors import NodepruneError
    from ..fsutil import write_json

    if args.format != "eap-ig":
        raise NodepruneError(
            f"{path} is an edge circuit, which exports as --format eap-ig or mib only so "
            "far (export its node circuit, RUN/circuit.json, for the other formats)"
        )
    graph = edge_eap_graph(EdgeCircuit.load(path))
    if args.out:
        print(f"wrote {write_json(args.out, graph)}", file=sys.stderr)
    else:
        sys.stdout.write(json.dumps(graph) + "\n")
    return 0


def _export_mib(
    args: argparse.Namespace, circuit: Any, run: Path, options: dict, edges: Any = None
) -> int:
    """The MIB submission of ``circuit`` from its run folder ``run`` (final log-alphas
    from its checkpoint; its edge circuit's gates, ``edges`` or the run's own)."""
    from ..edges.circuit import edge_circuit_for
    from ..errors import NodepruneError
    from ..export import BOS_KEY
    from ..export_mib import (
        final_log_alphas,
        mib_model_name,
        mib_task_name,
        order_decided_sizes,
        write_mib,
    )

    if not args.out:
        raise NodepruneError(
            "--format mib writes a submission folder: pass --out FOLDER (it gets "
            "<task>_<model>/importances.json)"
        )
    log_alphas, source = final_log_alphas(circuit, run)
    if edges is None:
        edges, edge_source = edge_circuit_for(circuit, run)
    else:
        edge_source = "the edge circuit given"
    mib_task_name(circuit, args.mib_task)  # bad names fail before the model is loaded
    mib_model_name(circuit, args.mib_model)
    attribution = None if args.no_attribution else _attribution(circuit, args.attribution_prompts)
    written, doc = write_mib(
        circuit,
        args.out,
        parallel_attn_mlp=options["parallel_attn_mlp"],
        log_alphas=log_alphas,
        mib_task=args.mib_task,
        mib_model=args.mib_model,
        edges=edges,
        attribution=attribution,
    )
    print(f"wrote {written}\nneuron gates: {source}\nedge gates: {edge_source}", file=sys.stderr)
    if attribution is not None:
        print(
            f"edge attribution: on {attribution.prompts} train prompts of the run, "
            "the last rule before EAP-IG's edge order",
            file=sys.stderr,
        )
    by_order = order_decided_sizes(doc)
    if by_order:
        sizes = ", ".join(f"{100 * f:g}%" for f in by_order)
        tied = (
            "edges equal on every rule, the edge attribution included (edges with no "
            "effect, or one key/value head's edges into its query heads),"
            if attribution is not None
            else "edges that nodeprune's gates cannot tell apart (such as the q/k/v edges of "
            "one parent and head; the edge attribution would, without --no-attribution)"
        )
        print(
            f"at {sizes} of the edges, {tied} meet at the cutoff; EAP-IG's edge order "
            "decides there",
            file=sys.stderr,
        )
    bos = circuit.extra.get(BOS_KEY)
    if bos is not True:
        which = "without one" if bos is False else "that may lack one (not recorded)"
        print(
            "note: MIB's evaluation (EAP-IG) prepends a BOS token to every prompt; this "
            f"circuit was found on prompts {which}",
            file=sys.stderr,
        )
    return 0


def _attribution(circuit: Any, prompts: int) -> Any:
    """The edge attribution of ``circuit``'s model, or a one-line error naming the opt-out."""
    from ..edges.attribution import circuit_attribution
    from ..errors import NodepruneError

    try:
        return circuit_attribution(circuit, prompts)
    except NodepruneError as exc:
        raise NodepruneError(
            f"the edge attribution needs the circuit's model and prompts: {exc}; pass "
            "--no-attribution to rank without it"
        ) from exc


def cmd_stability(args: argparse.Namespace) -> int:
    from ..stability import load_runs, save_stability, stability, stability_table

    result = stability(load_runs(args.runs), [str(p) for p in args.runs])
    print(stability_table(result))
    if args.out:
        print(f"\nwrote {save_stability(result, args.out)}")
    return 0


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help=REPORT_HELP)
    p.add_argument("run_dir", help="run folder holding circuit.json (compare.json, curves.json)")
    p.add_argument(
        "runs",
        nargs="*",
        help="more run folders of the same task (other seeds): adds a stability section",
    )
    p.set_defaults(func=cmd_report)


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    from ..export_formats import EXPORT_OPTIONS

    p = sub.add_parser("export", help=EXPORT_HELP)
    p.add_argument("circuit", help="circuit.json or its run folder")
    p.add_argument("--format", required=True, choices=list(EXPORT_OPTIONS), help="output format")
    p.add_argument(
        "--out", help="output file (default: standard output); for mib the submission folder"
    )
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
        help="eap-ig: add EAP-IG neuron masks (kept MLP output dimensions; heads whole)",
    )
    p.add_argument("--mib-task", help="mib: MIB's task name (default: the circuit's task)")
    p.add_argument("--mib-model", help="mib: MIB's model name (default: from the model, e.g. gpt2)")
    p.add_argument(
        "--attribution-prompts",
        type=bounded_int(1, 10**6),
        default=32,
        metavar="N",
        help="mib: train prompts of the run the edge attribution (the last tie-breaking "
        "rule) is averaged over (default 32; loads the circuit's model)",
    )
    p.add_argument(
        "--no-attribution",
        action="store_true",
        help="mib: no edge attribution (no model is loaded); ties it would break are left "
        "to EAP-IG's edge order",
    )
    p.set_defaults(func=cmd_export)


def add_stability_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stability", help=STABILITY_HELP)
    p.add_argument("runs", nargs="+", help="two or more run folders (or circuit.json files)")
    p.add_argument("--out", help="write the result as JSON (e.g. RUN_DIR/stability.json)")
    p.set_defaults(func=cmd_stability)
