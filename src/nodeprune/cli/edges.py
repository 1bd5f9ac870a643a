"""``nodeprune edges RUN``: the edge phase on a finished node run.

A command on the run folder rather than a ``discover --edges`` flag: the edge phase
needs only the node circuit and the settings it was found with (both in
``circuit.json``), so it runs on any existing run, again with other edge settings,
without repeating node discovery, and its files stay apart from the node run's
(``RUN/edges/``), whose ``--resume``/``--overwrite`` rules it never touches.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import NodepruneError
from .flags import bounded_int

EDGES_HELP = "edge phase: prune the edges between a node run's kept nodes (RUN/edges/)"


def _edge_settings(args: argparse.Namespace) -> dict[str, Any]:
    from ..edges.config import EdgeConfig

    names = {f.name for f in fields(EdgeConfig)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def cmd_edges(args: argparse.Namespace) -> int:
    from ..checkpoint import RunInterrupted
    from ..checkpoint_io import checkpoint_files, has_checkpoint, read_meta
    from ..circuit import Circuit
    from ..edges.config import EdgeConfig
    from ..edges.curve import edge_curve
    from ..edges.export import edge_eap_graph
    from ..edges.training import EdgeDiscovery, edge_workbench
    from ..fsutil import write_json
    from ..models import load_model
    from ..run_files import CIRCUIT_FILE, EDGE_CIRCUIT_FILE, EDGE_CURVE_FILE, EDGES_DIR
    from ..runlock import FolderLock

    run = Path(args.run)
    node_file = run / CIRCUIT_FILE
    if not node_file.is_file():
        raise NodepruneError(f"{run} holds no {CIRCUIT_FILE}; run nodeprune discover --out {run}")
    if args.resume and args.overwrite:
        raise NodepruneError("pass only one of --resume and --overwrite")
    out = run / EDGES_DIR
    result_file = out / EDGE_CIRCUIT_FILE
    out.mkdir(exist_ok=True)
    with FolderLock(out):
        held = result_file.exists() or has_checkpoint(out)
        if held and not (args.resume or args.overwrite):
            raise NodepruneError(
                f"{out} already holds an edge run; pass --resume to continue its checkpoint "
                "or --overwrite to start over"
            )
        if args.overwrite:
            for path in [result_file, *checkpoint_files(out)]:
                path.unlink(missing_ok=True)
        settings = _edge_settings(args)
        if args.resume:
            if not has_checkpoint(out):
                raise NodepruneError(f"--resume: {out} holds no edge checkpoint")
            saved = read_meta(out).get("config") or {}
            config = EdgeConfig.from_dict({**saved, **settings}, source=f"{out} checkpoint")
        else:
            config = EdgeConfig(**settings).validate()
        node = Circuit.load(node_file)
        saved_cfg = node.config
        loaded = load_model(
            node.model,
            dtype=saved_cfg.get("dtype", "float32"),
            device=args.device or saved_cfg.get("device", "cpu"),
        )
        with edge_workbench(loaded, node) as bench, EdgeDiscovery(bench, node, config) as phase:
            if args.resume:
                phase.load_checkpoint(out)
            try:
                result = phase.run(
                    progress=not args.quiet, checkpoint_dir=out, every=args.checkpoint_every
                )
            except RunInterrupted as exc:
                print(f"nodeprune: {exc}", file=sys.stderr)
                return 130
            result.save(result_file)
            for path in checkpoint_files(out):  # the result replaces the run state
                path.unlink(missing_ok=True)
            # Scored with the phase's hooks still on (one evaluation per size).
            curve = edge_curve(phase) if args.curve else None
        if args.eap:
            write_json(args.eap, edge_eap_graph(result))
        if curve is not None:
            write_json(out / EDGE_CURVE_FILE, curve)
    m = result.metrics
    print(
        f"edges kept {result.n_kept} of {len(result.kept)} candidates; faithfulness "
        f"{m['normalized_faithfulness']:.3f} (node circuit "
        f"{node.metrics.get('normalized_faithfulness', float('nan')):.3f}), KL {m['kl']:.3f}"
        f"; wrote {result_file}"
    )
    if curve is not None:
        area = curve["area"]
        print(
            f"edge curve: CPR {area['cpr']:.3f}, CMD {area['cmd']:.3f} over "
            f"{area['points']} sizes up to the node circuit's {len(result.kept)} candidate "
            f"edges of the model's {curve['model_edges']}; wrote {out / EDGE_CURVE_FILE}"
        )
    return 0


def add_edges_parser(sub: Any) -> None:
    p = sub.add_parser("edges", help=EDGES_HELP)
    p.add_argument("run", help="a discover run folder (holding circuit.json)")
    p.add_argument("--lam", type=float, help="edge sparsity weight in [0, 1) (default 0.95)")
    p.add_argument("--steps", type=bounded_int(1, 10**7), help="training steps (default 150)")
    p.add_argument("--lr", type=float, help="learning rate of the edge gates (default 0.5)")
    p.add_argument("--batch-size", type=bounded_int(1, 10**6), help="prompts per step (16)")
    p.add_argument("--sparsity-warmup", type=float, help="warm-up fraction of lam (0.33)")
    p.add_argument("--seed", type=bounded_int(0, 2**63 - 1), help="gate seed (default 0)")
    p.add_argument("--target-faithfulness", type=float, help="smallest edge circuit with >= F")
    p.add_argument("--target-kl", type=float, help="smallest edge circuit with KL <= K")
    p.add_argument("--target-size", type=float, help="keep at most this fraction of edges")
    p.add_argument("--target-every", type=bounded_int(1, 10**6), help="steps between checks")
    p.add_argument("--checkpoint-every", type=bounded_int(0, 10**7), default=50, metavar="N")
    p.add_argument("--resume", action="store_true", help="continue RUN/edges/'s checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start the edge run over")
    p.add_argument("--eap", metavar="FILE", help="also write the EAP-IG graph JSON here")
    p.add_argument(
        "--curve",
        action="store_true",
        help="also score the top-k edges at MIB's sizes: edge-level curve, CPR and CMD "
        "(RUN/edges/edge_curve.json; one test-split evaluation per size)",
    )
    p.add_argument("--device", help="override the node run's device")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_edges)


__all__ = ["EDGES_HELP", "add_edges_parser", "cmd_edges"]
