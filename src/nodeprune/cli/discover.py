"""``nodeprune discover`` and ``nodeprune evaluate``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..config import MAX_EXAMPLES
from ..errors import NodepruneError
from .flags import (
    add_config_flags,
    add_large_model_flags,
    bounded_int,
    config_from_args,
    given_config,
)

DISCOVER_HELP = "find a circuit for a task on a model"
EVALUATE_HELP = "recompute a saved circuit's metrics"


def cmd_discover(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    default_name = f"custom-{Path(cfg.task_file).stem}" if cfg.task_file else cfg.task
    out = Path(args.out or f"runs/{default_name}")
    if args.checkpoint_every < 0:
        raise NodepruneError(f"checkpoint_every must be >= 0, got {args.checkpoint_every}")
    from ..tasks import resolve_task

    # The task is checked before the output folder is touched and the model loaded, so
    # a typo costs no model load.
    task = None if args.resume else resolve_task(cfg.task, cfg.task_file)
    # Torch and the model code are imported after the settings and the task are checked,
    # so bad input is answered at once.
    from ..checkpoint import RunInterrupted, check_task_file, read_meta
    from ..discovery import Discovery
    from ..fsutil import check_free_space
    from ..large_models import load_options_from_args, load_with_options
    from ..runcost import (
        DurationWatch,
        check_reference_memory,
        run_folder_bytes,
        warn_large_setup,
    )
    from ..runs import RunFolder, resume_hint, resumed_config, train, write_result

    # Locked for the whole run; an --overwrite keeps the old run until this one has
    # written a checkpoint or its result, and puts it back if it fails before that.
    with RunFolder(out, args.resume, args.overwrite) as folder:
        if args.resume:
            cfg = resumed_config(out, *given_config(args))
            task = resolve_task(cfg.task, cfg.task_file)
            check_task_file(read_meta(out), task, out)
        warn_large_setup(cfg.n_train, cfg.n_val, cfg.n_test)
        print(f"loading {cfg.model} ...", file=sys.stderr)
        loaded = load_with_options(cfg.model, cfg.dtype, cfg.device, load_options_from_args(args))
        check_reference_memory(loaded, cfg.n_train)
        # Its workbench hooks the model (and tells gradient checkpointing to replay them).
        discovery = Discovery(loaded, cfg, task=task)
        if args.resume:
            discovery.load_checkpoint(out)
            print(f"resuming {out} at step {discovery.step} of {cfg.steps}", file=sys.stderr)
        check_free_space(out, run_folder_bytes(discovery), "the output folder (--out)")
        counts = discovery.data.counts
        print(
            "examples kept after filtering (the full model must answer correctly): "
            + ", ".join(f"{s} {c['kept']}/{c['generated']}" for s, c in counts.items()),
            file=sys.stderr,
        )
        watch = DurationWatch(cfg.steps)

        def on_step(d: Discovery) -> None:
            folder.settle()
            watch(d)

        try:
            circuit = train(discovery, out, not args.quiet, args.checkpoint_every, on_step)
        except RunInterrupted as exc:
            print(f"nodeprune: {exc}; {resume_hint(out)}", file=sys.stderr)
            return exc.exit_code
        return write_result(circuit, out, args.allow_empty)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..circuit import Circuit
    from ..models import load_model
    from ..runcost import warn_large_evaluation
    from ..runs import check_circuit_task_file
    from ..summary import metrics_table, task_metric_label
    from ..workbench import evaluate_circuit

    circuit = Circuit.load(args.circuit)
    check_circuit_task_file(circuit, args.circuit)
    cfg = circuit.config
    if args.n is not None:
        warn_large_evaluation(args.n)
    loaded = load_model(
        circuit.model,
        dtype=cfg.get("dtype", "float32"),
        device=args.device or cfg.get("device", "cpu"),
    )
    metrics = evaluate_circuit(loaded, circuit, seed=args.seed, n_test=args.n)
    if args.json:
        print(json.dumps(metrics, indent=1))
    else:
        print(metrics_table(metrics, task_metric_label(circuit.task)))
    return 0


def add_discover_parser(sub: Any) -> None:
    p = sub.add_parser("discover", help=DISCOVER_HELP)
    p.add_argument("--config", help="TOML file with any of the flags below as keys")
    p.add_argument("--out", help="output folder (default runs/TASK)")
    p.add_argument(
        "--overwrite", action="store_true", help="start over in an output folder holding a run"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run checkpointed in the output folder (settings come from it)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=50,
        metavar="N",
        help="write a checkpoint every N steps (0: only after the last step and on "
        "SIGINT/SIGTERM) (default 50)",
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept an empty circuit as circuit.json (otherwise it goes to "
        "circuit.empty.json and the exit status is 3)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(p, command_target=True)
    add_large_model_flags(p)
    p.set_defaults(func=cmd_discover)


def add_evaluate_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help=EVALUATE_HELP)
    p.add_argument("circuit", help="path to circuit.json")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument(
        "--seed", type=bounded_int(0, 2**63 - 1), help="draw fresh test prompts with this seed"
    )
    p.add_argument("--n", type=bounded_int(1, MAX_EXAMPLES), help="number of test prompts to draw")
    p.add_argument("--device", help="override the device")
    p.set_defaults(func=cmd_evaluate)
