"""How the cost of a discovery step grows: with the model, the batch and the length.

Runs bench/cost.py (floor and nodeprune, each in a fresh process) for each point and
prints one table. Node counts grow with the model while the memory above the loaded
model grows with the activations (batch x length x layers x width), as for the floor.

    python bench/scaling.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from nodeprune.dtypes import AUTOCAST_DTYPES

HERE = Path(__file__).resolve().parent

MODELS = ["random:tiny-llama", "smollm2-135m", "random:gpt2-medium", "random:llama-1b"]
BATCHES = [4, 8, 16, 32]
PREFIXES = [0, 32, 96]


def measure(model: str, batch: int, prefix: int, steps: int, autocast: str = "off") -> dict:
    cmd = [sys.executable, str(HERE / "cost.py"), "--model", model, "--batch", str(batch),
           "--prefix-tokens", str(prefix), "--steps", str(steps), "--json",
           "--autocast", autocast]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"model": model, "batch": batch, "prefix": prefix, "error": out.stderr[-500:]}
    r = json.loads(out.stdout)
    r["prefix"] = prefix
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer points (minutes, not tens)")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument(
        "--autocast", default="off", choices=list(AUTOCAST_DTYPES),
        help="run the floor and nodeprune under torch.autocast",
    )  # fmt: skip
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    models = MODELS[:3] if args.quick else MODELS
    batches = BATCHES[:3] if args.quick else BATCHES
    points = [(m, 8, 0) for m in models]
    points += [("smollm2-135m", b, 0) for b in batches if b != 8]
    points += [("smollm2-135m", 8, n) for n in PREFIXES if n]
    rows = []
    for model, batch, prefix in points:
        r = measure(model, batch, prefix, args.steps, args.autocast)
        rows.append(r)
        if "error" in r:
            print(f"{model} batch {batch} prefix {prefix}: failed: {r['error']}", file=sys.stderr)
            continue
        print(
            f"{model:<20} batch {batch:>3} len {r['seq_len']:>4}  "
            f"floor {r['floor']['step_s']:7.3f} s {r['floor']['peak_mb']:7.0f} MB "
            f"(+{r['floor']['above_base_mb']:5.0f})  "
            f"nodeprune {r['nodeprune']['step_s']:7.3f} s {r['nodeprune']['peak_mb']:7.0f} MB "
            f"(+{r['nodeprune']['above_base_mb']:5.0f})  "
            f"ratios time {r['time_ratio']:.2f} mem {r['memory_ratio']:.2f}",
            flush=True,
        )
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
