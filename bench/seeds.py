"""Stability across seeds: the same discovery at several seeds, then the spread of the
test faithfulness and the pairwise Jaccard of the kept sets, against the goals of
``nodeprune stability`` (sd <= 0.03, heads >= 0.7, MLP neurons >= 0.6).

    python bench/seeds.py                                    # SmolLM2 IOI, 5 seeds, defaults
    python bench/seeds.py --seeds 0 1 2 --set target_faithfulness=0.9 --set autocast=bfloat16
    python bench/seeds.py --set granularities=all --set optimizer=granular_adam

Each seed's circuit is written to OUT/seed-S/circuit.json with its step history in
history.jsonl and its final checkpoint (every gate's log-alpha; an existing circuit is
reused, so a stopped benchmark continues), the stability JSON and table to OUT/.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path


def parse_setting(text: str) -> tuple[str, object]:
    key, _, raw = text.partition("=")
    try:
        value: object = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


def main(argv: list[str] | None = None) -> int:
    from nodeprune import Circuit, DiscoveryConfig, load_model
    from nodeprune.discovery import Discovery
    from nodeprune.stability import save_stability, stability, stability_table

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--task", default="ioi")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE discover setting")
    p.add_argument("--out", default="runs/bench-seeds")
    args = p.parse_args(argv)
    settings = dict(parse_setting(s) for s in args.set)
    out = Path(args.out)
    loaded = load_model(args.model)
    circuits = []
    for seed in args.seeds:
        path = out / f"seed-{seed}" / "circuit.json"
        if path.exists():
            circuits.append(Circuit.load(path))
            continue
        cfg = DiscoveryConfig.from_dict(
            {"model": args.model, "task": args.task, "seed": seed, **settings}
        ).validate()
        started = time.perf_counter()
        discovery = Discovery(loaded, cfg)
        # The checkpoint keeps every gate's final log-alpha (the circuit file keeps only
        # the coarse ones), so a seed's gates can be re-selected or compared later.
        circuit = discovery.run(progress=False, checkpoint_dir=path.parent)
        circuit.save(path)
        # The controller's trajectory says why a seed ended where it did (over-pruned
        # early, or never reached its target), which the circuit alone does not.
        write_history(discovery.history, path.parent / "history.jsonl")
        m = circuit.metrics
        print(
            f"seed {seed}: faithfulness {m['normalized_faithfulness']:.3f} "
            f"[{m['normalized_faithfulness_low']:.3f}, {m['normalized_faithfulness_high']:.3f}]"
            f" KL {m['kl']:.3f} heads {circuit.kept('attention_head')} "
            f"MLP neurons {circuit.kept('mlp_neuron')} ({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        circuits.append(circuit)
    if len(circuits) < 2:  # one seed (a lane of a split benchmark): nothing to compare yet
        return 0
    result = stability(circuits)
    result["settings"] = settings
    save_stability(result, out / "stability.json")
    text = stability_table(result)
    (out / "stability.txt").write_text(text + "\n", encoding="utf-8")
    print(f"settings: {settings or 'defaults'}\n{text}")
    return 0


def write_history(history: list, path: Path) -> None:
    import json
    from dataclasses import asdict

    lines = [json.dumps(asdict(log)) for log in history]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
