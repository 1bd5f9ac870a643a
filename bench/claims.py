"""The central claim at equal faithfulness, task by task, and the faithfulness curves.

For each task, ``nodeprune compare`` runs multi-granular and coarse node pruning at one
faithfulness target (plus the attribution and random baselines at the multi-granular
sizes) on the same prompts; with ``--curve-targets`` both discovery methods run again
at each further target, which gives the curves (with CPR and CMD).

    python bench/claims.py                                   # 4 tasks on SmolLM2, target 0.85
    python bench/claims.py --tasks ioi greater_than --curve-targets 0.5 0.7 0.8 0.95
    python bench/claims.py --set autocast=bfloat16 --set optimizer=granular_adam

Writes OUT/<task>/ (compare.json, curves.json, claim.json, compare.txt, circuits/,
claim_row.md), OUT/claims.md (one row per task) and OUT/<task>/curves.png. A task with
a claim_row.md is not run again, so a stopped benchmark continues and tasks can be run
by separate invocations into the same OUT; within a task, every discovery (each method
at each target) is kept in OUT/<task>/discoveries/ as soon as it is found and read back
by a later run of the same settings, so a stopped curve loses at most the discovery
that was running.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from seeds import parse_setting

TASKS = ("ioi", "greater_than", "gendered_pronoun", "sva")


def claim_row(task: str, claim: dict, seconds: float) -> str:
    f, n, blocks = claim["normalized_faithfulness"], claim["neurons"]["all"], claim["mlp_blocks"]
    return (
        f"| {task} | {f['multi-granular']:.3f} | {f['coarse']:.3f} | "
        f"{n['inside_coarse']} | {n['kept_by_multi']} ({100 * (1 - n['dropped_fraction']):.1f}%)"
        f" | {blocks['multi-granular']} / {blocks['coarse']} | "
        f"{'yes' if claim['shown'] else 'no'} | {seconds / 60:.1f} |"
    )


HEADER = (
    "| task | faithfulness, multi-granular | faithfulness, coarse | neurons inside coarse "
    "components | of them kept by multi-granular | MLP blocks multi / coarse | claim shown "
    "| minutes |\n|---|---|---|---|---|---|---|---|"
)


def main(argv: list[str] | None = None) -> int:
    from nodeprune import DiscoveryConfig, load_model
    from nodeprune.compare import CompareOptions, Comparison
    from nodeprune.config import COMMAND_TARGET
    from nodeprune.methods import DEFAULT_CURVE_SCALES
    from nodeprune.run_files import DISCOVERIES_DIR

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--target", type=float, default=COMMAND_TARGET[1])  # the commands' default
    p.add_argument("--curve-targets", type=float, nargs="*", default=[])
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE discover setting")
    p.add_argument("--random-draws", type=int, default=3)
    p.add_argument(
        "--curve-scales",
        type=float,
        nargs="*",
        default=None,
        help="sizes of the baselines' curve points (default: compare's with --curve-targets, "
        "else none: the claim needs only the matched sizes, and each point is a test pass)",
    )
    p.add_argument("--out", default="runs/bench-claims")
    args = p.parse_args(argv)
    settings = dict(parse_setting(s) for s in args.set)
    out = Path(args.out)
    loaded = load_model(args.model)
    rows = []
    for task in args.tasks:
        row_file = out / task / "claim_row.md"
        if row_file.exists():  # done by an earlier (stopped or split) run of this script
            rows.append(row_file.read_text(encoding="utf-8").strip())
            continue
        cfg = DiscoveryConfig.from_dict(
            {"model": args.model, "task": task, "target_faithfulness": args.target, **settings}
        ).validate()
        scales = args.curve_scales
        if scales is None:
            scales = list(DEFAULT_CURVE_SCALES) if args.curve_targets else []
        options = CompareOptions(
            random_draws=args.random_draws,
            curve_targets=list(args.curve_targets),
            curve_scales=scales,
            progress=False,
            reuse_dir=out / task / DISCOVERIES_DIR,
        )
        started = time.perf_counter()
        comparison = Comparison(loaded, cfg, options)
        try:
            result = comparison.run()
        finally:
            comparison.close()
        seconds = time.perf_counter() - started
        result.save(out / task)
        rows.append(claim_row(task, result.claim, seconds))
        row_file.write_text(rows[-1] + "\n", encoding="utf-8")
        print(result.claim_text(), file=sys.stderr, flush=True)
        write_curve_plot(result.curves_json(), out / task / "curves.png")
    table = f"target faithfulness {args.target}, settings {settings or 'defaults'}\n\n"
    table += HEADER + "\n" + "\n".join(rows)
    (out / "claims.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    print(json.dumps({"out": str(out)}))
    return 0


def write_curve_plot(curves: dict, path: Path) -> None:
    try:
        from nodeprune.reports.figures_eval import faithfulness_curves
    except ImportError:  # plots are an extra
        return
    plot = faithfulness_curves(curves)
    if plot is not None:
        path.write_bytes(plot.png)


if __name__ == "__main__":
    raise SystemExit(main())
