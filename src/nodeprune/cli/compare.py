"""The ``nodeprune compare`` command: every ``discover`` flag, plus the comparison's own."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..errors import NodepruneError
from ..run_files import COMPARE_FILE, DISCOVERIES_DIR
from .flags import add_config_flags, config_from_args

COMPARE_HELP = "compare multi-granular pruning with coarse pruning, attribution and random"


def add_compare_parser(sub: Any) -> None:
    """``nodeprune compare``: every ``discover`` flag, plus the comparison's own."""
    from ..methods import DEFAULT_CURVE_SCALES, METHODS

    p = sub.add_parser("compare", help=COMPARE_HELP)
    p.add_argument("--config", help="TOML file with any of the discover flags as keys")
    p.add_argument("--out", help="output folder (default runs/compare-TASK)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing compare.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--no-reuse",
        action="store_true",
        help="train every discovery again, even those OUT/discoveries/ kept from an earlier "
        "run of the same configuration (by default a stopped compare continues)",
    )
    p.add_argument(
        "--methods",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=list(METHODS),
        help=f"comma-separated subset of {', '.join(METHODS)} (multi-granular always runs)",
    )
    p.add_argument("--random-draws", type=int, default=5, help="random circuits per size")
    p.add_argument(
        "--curve-lams",
        type=float,
        nargs="+",
        default=[],
        help="extra lam values: one more multi-granular and coarse discovery each, "
        "for the faithfulness curves (sequential; each costs a full run)",
    )
    p.add_argument(
        "--curve-targets",
        type=float,
        nargs="+",
        default=[],
        help="extra faithfulness targets: one more multi-granular and coarse discovery each "
        "at that target (--target-faithfulness), for curves at equal faithfulness",
    )
    p.add_argument(
        "--curve-scales",
        type=float,
        nargs="*",
        default=list(DEFAULT_CURVE_SCALES),
        help="points of the size knob (0 empty, 1 the multi-granular sizes, 2 full) at which "
        "attribution and random circuits are evaluated for their curves (2 is always added)",
    )
    p.add_argument(
        "--search-steps",
        type=int,
        default=8,
        help="bisection steps of the faithfulness-matched attribution size",
    )
    add_config_flags(p, command_target=True)
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: Any) -> int:
    from ..methods import METHODS

    cfg = config_from_args(args)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise NodepruneError(
            f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}"
        )
    out = Path(args.out or f"runs/compare-{cfg.task}")
    if (out / COMPARE_FILE).exists() and not args.overwrite:
        raise NodepruneError(f"{out / COMPARE_FILE} exists; pass --overwrite to replace it")
    # Imported after the checks, so bad input is answered without waiting for torch.
    from ..compare import CompareOptions, Comparison
    from ..models import load_model

    options = CompareOptions(
        random_draws=args.random_draws,
        curve_lams=list(args.curve_lams),
        curve_targets=list(args.curve_targets),
        curve_scales=list(args.curve_scales),
        search_steps=args.search_steps,
        progress=not args.quiet,
        reuse_dir=None if args.no_reuse else out / DISCOVERIES_DIR,
    )
    print(f"loading {cfg.model} ...", file=sys.stderr)
    loaded = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    comparison = Comparison(loaded, cfg, options)
    try:
        result = comparison.run(args.methods)
    finally:
        comparison.close()
    print(result.table())
    print()
    print(result.claim_text())
    for path in result.save(out):
        print(f"wrote {path}", file=sys.stderr)
    return 0
