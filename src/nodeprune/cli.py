"""The ``nodeprune`` command. Flags for ``discover`` are generated from DiscoveryConfig,
so every hyperparameter has one and can also come from a TOML file (``--config``).

Start-up is kept light: this module imports neither torch nor transformers nor any
optional package (they come with the subcommand that needs them), and only the
subcommand being run gets its full parser, so ``nodeprune --help`` and argument errors
answer in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

from .config import MAX_EXAMPLES, DiscoveryConfig, load_toml
from .errors import NodepruneError
from .granularity import GRANULARITIES
from .sweeps.large_models import add_large_model_flags

HELP = {
    "model": "smollm2-135m (offline default), a Hugging Face hub name, a folder or a .gguf file",
    "task": "built-in task name (see `nodeprune tasks`)",
    "task_file": "JSONL file of prompt pairs (a custom task)",
    "ablation": "what pruned nodes take: corrupted (default), mean or zero",
    "granularities": "comma-separated granularities to gate, or all",
    "lam": "weight of sparsity vs faithfulness, in [0, 1]",
    "sparsity_warmup": "fraction of steps over which lam ramps up from 0",
    "margin_weight": "weight of the task-margin term in the faithfulness loss",
    "init_log_alpha": "mean initial gate log-alpha (higher = gates start more open)",
    "init_spread": "half-width of the uniform spread around init_log_alpha",
    "seed": "seed of the gates' initialisation, hard-concrete noise and batch order",
    "data_seed": "seed of the prompts (train, validation, test); fixed when only --seed changes",
    "filter": "keep only examples the full model answers correctly",
    "device": "cpu, cuda, cuda:1, mps ...",
    "dtype": "float32, bfloat16 or float16 model weights (gates stay fp32)",
    "autocast": "off, bfloat16 or float16: mixed precision for the training passes "
    "(evaluation stays in --dtype)",
    "target_faithfulness": "find the smallest circuit whose normalized faithfulness on the "
    "validation prompts is at least this (in (0, 1]); the sparsity weight is then steered "
    "and lam only sets its starting point",
    "target_kl": "find the smallest circuit whose KL to the full model is at most this",
    "target_size": "find the circuit that keeps this fraction of attention + MLP neurons",
    "optimizer": "adamw, or granular_adam: Adam with one second moment per granularity, so "
    "a gate moves in proportion to how much the objective cares about it",
    "target_every": "steps between the target controller's validation measurements",
    "target_rate": "step of the target controller's log sparsity weight",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    defaults = DiscoveryConfig()
    for f in fields(DiscoveryConfig):
        default = getattr(defaults, f.name)
        helptext = HELP.get(f.name, f.name.replace("_", " "))
        if f.name == "lam_g":
            for g in GRANULARITIES:
                parser.add_argument(
                    _flag(f"lam_{g}"),
                    dest=f"lam_g.{g}",
                    type=float,
                    default=argparse.SUPPRESS,
                    help=f"sparsity weight lam_g of {g} (default {default[g]})",
                )
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, list):
            kwargs["type"] = lambda s: [x for x in s.split(",") if x]
        elif default is None:  # optional settings: task_file (a path) or a target (a number)
            kwargs["type"] = str if f.name == "task_file" else float
        else:
            kwargs["type"] = type(default)
        shown = ",".join(default) if isinstance(default, list) else default
        parser.add_argument(_flag(f.name), help=f"{helptext} (default {shown})", **kwargs)


def config_from_args(args: argparse.Namespace) -> DiscoveryConfig:
    """Defaults, then the TOML file, then flags given on the command line."""
    data, source = given_config(args)
    return DiscoveryConfig.from_dict(data, source=source).validate()


def given_config(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The settings the user gave (TOML file, then flags), without defaults; the source."""
    data: dict[str, Any] = {}
    if getattr(args, "config", None):
        data.update(load_toml(args.config))
        source = str(args.config)
    else:
        source = "config"
    if not isinstance(data.get("lam_g", {}), dict):
        raise NodepruneError(f"{source}: lam_g must be a table ([lam_g]) of granularity = weight")
    lam_g = dict(data.get("lam_g", {}))
    for key, value in vars(args).items():
        if key.startswith("lam_g."):
            lam_g[key.split(".", 1)[1]] = value
        elif key in {f.name for f in fields(DiscoveryConfig)}:
            data[key] = value
    if lam_g:
        data["lam_g"] = lam_g
    return data, source


def cmd_discover(args: argparse.Namespace) -> int:
    from .checkpoint import RunInterrupted, check_task_file, read_meta
    from .discovery import Discovery
    from .fsutil import check_free_space
    from .runcost import (
        DurationWatch,
        check_reference_memory,
        run_folder_bytes,
        warn_large_setup,
    )
    from .runs import RunFolder, resume_hint, resumed_config, train, write_result
    from .tasks import resolve_task

    cfg = config_from_args(args)
    default_name = f"custom-{Path(cfg.task_file).stem}" if cfg.task_file else cfg.task
    out = Path(args.out or f"runs/{default_name}")
    if args.checkpoint_every < 0:
        raise NodepruneError(f"checkpoint_every must be >= 0, got {args.checkpoint_every}")
    # The task is checked before the output folder is touched and the model loaded, so
    # a typo costs no model load.
    task = None if args.resume else resolve_task(cfg.task, cfg.task_file)
    # Locked for the whole run; an --overwrite keeps the old run until this one has
    # written a checkpoint or its result, and puts it back if it fails before that.
    with RunFolder(out, args.resume, args.overwrite) as folder:
        if args.resume:
            cfg = resumed_config(out, *given_config(args))
            task = resolve_task(cfg.task, cfg.task_file)
            check_task_file(read_meta(out), task, out)
        warn_large_setup(cfg.n_train, cfg.n_val, cfg.n_test)
        print(f"loading {cfg.model} ...", file=sys.stderr)
        from .sweeps.large_models import attach_gated, load_options_from_args, load_with_options

        loaded = load_with_options(cfg.model, cfg.dtype, cfg.device, load_options_from_args(args))
        check_reference_memory(loaded, cfg.n_train)
        discovery = Discovery(loaded, cfg, task=task)
        attach_gated(loaded.model, discovery.gated)  # gradient checkpointing replays the gates
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
    from .circuit import Circuit
    from .evaluation import evaluate_circuit
    from .models import load_model
    from .runcost import warn_large_evaluation
    from .runs import check_circuit_task_file
    from .summary import metrics_table, task_metric_label

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


def cmd_tasks(args: argparse.Namespace) -> int:
    import random

    from .models import load_tokenizer
    from .tasks import TASKS
    from .tasks.vocab import WhitespaceTokenizer

    try:
        tokenizer, source = load_tokenizer(), "the SmolLM2-135M tokenizer"
    except NodepruneError:
        tokenizer, source = WhitespaceTokenizer(), "a whitespace tokenizer (SmolLM2 not installed)"
    print(f"Built-in tasks; example prompt pairs drawn with {source}.\n")
    pad = " " * 18
    for name, cls in TASKS.items():
        task = cls()
        print(f"{name:<18}{task.description}")
        try:
            ex = task.generate(1, random.Random(0), tokenizer)[0]
        except NodepruneError as exc:
            print(f"{pad}(no example for this tokenizer: {exc})")
            continue
        print(f"{pad}clean:     {ex.clean!r} -> {ex.answer!r} (distractor {ex.distractor!r})")
        print(f"{pad}corrupted: {ex.corrupted!r}")
    print(
        f"{'custom':<18}your own prompt pairs: nodeprune discover --task-file FILE "
        "(nodeprune or Edge Pruning JSONL, or auto-circuit JSON; see README, Tasks)"
    )
    return 0


def _add_discover(sub: Any) -> None:
    p = sub.add_parser("discover", help=COMMANDS["discover"])
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
    add_config_flags(p)
    add_large_model_flags(p)
    p.set_defaults(func=cmd_discover)


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (the same bounds as DiscoveryConfig's
    sizes and seed), so that `--n 10**12` is an argument error, not hours of prompts."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}], got {value}")
        return value

    return parse


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help=COMMANDS["evaluate"])
    p.add_argument("circuit", help="path to circuit.json")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument(
        "--seed", type=bounded_int(0, 2**63 - 1), help="draw fresh test prompts with this seed"
    )
    p.add_argument("--n", type=bounded_int(1, MAX_EXAMPLES), help="number of test prompts to draw")
    p.add_argument("--device", help="override the device")
    p.set_defaults(func=cmd_evaluate)


def _add_tasks(sub: Any) -> None:
    p = sub.add_parser("tasks", help=COMMANDS["tasks"])
    p.set_defaults(func=cmd_tasks)


def _add_models(sub: Any) -> None:
    from .architectures.command import add_models_parser  # imports torch (the adapters)

    add_models_parser(sub)


def _add_sweep(sub: Any) -> None:
    from .sweeps.command import add_sweep_parser

    add_sweep_parser(sub, add_config_flags)


def _add_compare(sub: Any) -> None:
    from .compare import add_compare_parser  # imports torch

    add_compare_parser(sub)


def _add_report(sub: Any) -> None:
    from .reports.commands import add_report_parser

    add_report_parser(sub)


def _add_export(sub: Any) -> None:
    from .reports.commands import add_export_parser

    add_export_parser(sub)


def _add_stability(sub: Any) -> None:
    from .reports.commands import add_stability_parser

    add_stability_parser(sub)


#: The subcommands, in ``nodeprune --help`` order, with their one-line help. Each
#: builder's own ``add_parser`` call says the same (tests/test_cli_startup.py checks).
COMMANDS: dict[str, str] = {
    "discover": "find a circuit for a task on a model",
    "evaluate": "recompute a saved circuit's metrics",
    "tasks": "list the built-in tasks",
    "sweep": "run discovery over a grid (lam, lam_g, task, seed, model) on Ray or locally",
    "compare": "compare multi-granular pruning with coarse pruning, attribution and random",
    "report": "write RUN_DIR/report.html and figures",
    "export": "export a circuit for EAP-IG / MIB or TransformerLens",
    "stability": "keep frequency and Jaccard overlap across runs",
    "models": "list the built-in models and the verified model families",
}
BUILDERS: dict[str, Callable[[Any], None]] = {
    "discover": _add_discover,
    "evaluate": _add_evaluate,
    "tasks": _add_tasks,
    "sweep": _add_sweep,
    "compare": _add_compare,
    "report": _add_report,
    "export": _add_export,
    "stability": _add_stability,
    "models": _add_models,
}


def build_parser(full: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``nodeprune`` parser. ``full``: the subcommands to build with all their flags
    (default all); the others are listed with their help only. Building some of them
    imports torch (export, compare), which a command that does not run them must not wait
    for."""
    chosen = set(COMMANDS if full is None else full)
    parser = argparse.ArgumentParser(
        prog="nodeprune", description="Circuit discovery by multi-granular node pruning."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in COMMANDS.items():
        if name in chosen:
            BUILDERS[name](sub)
        else:
            sub.add_parser(name, help=helptext, add_help=False)
    return parser


def _command_of(argv: list[str]) -> list[str]:
    """The subcommand ``argv`` runs, as build_parser's ``full`` (none for ``--help``, a
    missing or a misspelt command: the top-level parser answers those)."""
    return [argv[0]] if argv and argv[0] in COMMANDS else []


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(_command_of(argv)).parse_args(argv)
        return int(args.func(args))
    except NodepruneError as exc:
        print(f"nodeprune: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        from .extras import install_hint, missing_module

        module = missing_module(exc)
        if module is None:
            raise
        # An optional package that a code path deeper down needs (an extra).
        print(
            f"nodeprune: error: {module} is needed here but is not installed "
            f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}): "
            f"{install_hint(module)}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("nodeprune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
