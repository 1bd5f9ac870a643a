"""``nodeprune sweep``: the grid from a TOML file and/or flags, then run_sweep."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import LAM_G_PREFIX
from ..granularity import GRANULARITIES
from ..sweeps.backends import BACKENDS
from ..sweeps.settings import AXIS_PREFIX, AXIS_TYPES, RUN_DEFAULTS
from .flags import add_config_flags, add_large_model_flags

SWEEP_HELP = "run discovery over a grid (lam, lam_g, task, seed, model) on Ray or locally"


def add_sweep_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "sweep",
        help=SWEEP_HELP,
        # The axis flags below replace discover's single-valued --lam/--seed/... .
        conflict_handler="resolve",
    )
    p.add_argument("--config", help="sweep TOML: discover keys, [sweep] axes, [run] settings")
    add_config_flags(p)
    for name, kind in AXIS_TYPES.items():
        p.add_argument(
            f"--{name}", dest=AXIS_PREFIX + name, nargs="+", type=kind,
            default=argparse.SUPPRESS, help=f"sweep axis: one or more values of {name}",
        )  # fmt: skip
    for g in GRANULARITIES:
        p.add_argument(
            f"--lam-{g.replace('_', '-')}", dest=f"{AXIS_PREFIX}{LAM_G_PREFIX}{g}", nargs="+",
            type=float, default=argparse.SUPPRESS,
            help=f"sweep axis: one or more values of lam_g for {g}",
        )  # fmt: skip
    p.add_argument("--out", help=f"output folder (default {RUN_DEFAULTS['out']})")
    p.add_argument("--backend", choices=BACKENDS, help="where trials run (default ray)")
    p.add_argument("--ray-address", help="an existing Ray cluster (default: a local instance)")
    p.add_argument("--ray-num-cpus", type=int, help="CPUs of the local Ray instance (default all)")
    p.add_argument("--trial-cpus", type=float, help="CPUs one trial asks Ray for (default 1)")
    p.add_argument(
        "--trial-gpus", type=float, help="GPUs one trial asks Ray for (default 1 on cuda, else 0)"
    )
    p.add_argument("--trial-memory-gb", type=float, help="memory one trial asks Ray for")
    p.add_argument("--max-workers", type=int, help="Ray workers (default: as many as fit)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_large_model_flags(p)
    p.set_defaults(func=cmd_sweep)
    return p


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..sweeps.runner import run_sweep
    from ..sweeps.settings import make_backend, spec_and_settings

    spec, settings = spec_and_settings(args)
    backend = make_backend(settings)
    trials = spec.trials()
    print(
        f"sweep of {len(trials)} trials on the {backend.name} backend into {settings['out']}",
        file=sys.stderr,
    )
    report = run_sweep(spec, settings["out"], backend, progress=not args.quiet)
    print(report.summary())
    return 1 if report.failed else 0
