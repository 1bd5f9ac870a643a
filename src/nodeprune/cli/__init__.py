"""The ``nodeprune`` command: the top floor of the package, which nothing below imports.

One module per subcommand (``discover`` and ``evaluate``, ``tasks``, ``sweep``,
``compare``, ``report``/``export``/``stability``, ``models``); shared flags in
:mod:`nodeprune.cli.flags`. Start-up is kept light: these modules import neither torch
nor transformers nor any optional package at module level (they come with the
subcommand that needs them), and only the subcommand being run gets its full parser,
so ``nodeprune --help`` and argument errors answer in a fraction of a second.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import NodepruneError
from . import compare, discover, edges, models, reports, sweep, tasks
from .flags import add_config_flags, config_from_args, given_config

#: The subcommands, in ``nodeprune --help`` order, with their one-line help (each
#: subcommand's module owns its text) and the function that adds its full parser.
COMMANDS: dict[str, str] = {
    "discover": discover.DISCOVER_HELP,
    "evaluate": discover.EVALUATE_HELP,
    "edges": edges.EDGES_HELP,
    "tasks": tasks.TASKS_HELP,
    "sweep": sweep.SWEEP_HELP,
    "compare": compare.COMPARE_HELP,
    "report": reports.REPORT_HELP,
    "export": reports.EXPORT_HELP,
    "stability": reports.STABILITY_HELP,
    "models": models.MODELS_HELP,
}
BUILDERS: dict[str, Callable[[Any], object]] = {
    "discover": discover.add_discover_parser,
    "evaluate": discover.add_evaluate_parser,
    "edges": edges.add_edges_parser,
    "tasks": tasks.add_tasks_parser,
    "sweep": sweep.add_sweep_parser,
    "compare": compare.add_compare_parser,  # imports torch
    "report": reports.add_report_parser,
    "export": reports.add_export_parser,  # imports torch
    "stability": reports.add_stability_parser,
    "models": models.add_models_parser,
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
        from ..extras import install_hint, missing_module

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


__all__ = [
    "BUILDERS",
    "COMMANDS",
    "add_config_flags",
    "build_parser",
    "config_from_args",
    "given_config",
    "main",
]
