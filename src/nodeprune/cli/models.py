"""``nodeprune models``: the built-in models, the verified model families and the modules
nodeprune hooks."""

from __future__ import annotations

import argparse

MODELS_HELP = "list the built-in models and the verified model families"


def cmd_models(args: argparse.Namespace) -> int:
    from ..architectures.listing import builtin_table, models_table  # imports torch

    print(builtin_table(markdown=args.markdown))
    print()
    print(models_table(markdown=args.markdown))
    return 0


def add_models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help=MODELS_HELP)
    p.add_argument("--markdown", action="store_true", help="print the README table")
    p.set_defaults(func=cmd_models)
