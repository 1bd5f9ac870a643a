"""Cost of one nodeprune discovery step against the floor, measured side by side.

The floor is what any gradient-based discovery must at least pay for the same model,
batch and prompts: one forward pass on the corrupted prompts without gradients, plus
one forward+backward pass on the clean prompts with frozen weights, the gradient taken
with respect to the residual stream (the embedding output), the loss being the KL at
the answer position (LM head applied there only, as nodeprune does).

Each measurement runs in its own fresh process, so the two never share memory.

    python bench/cost.py --model smollm2-135m --batch 16 [--json] [--peer]
    python bench/cost.py --model random:llama-1b --batch 4 --prefix-tokens 64

``random:<shape>`` builds a randomly initialised model of a shape in bench/_shapes.py.

With --peer, also runs the edge-level peer (bench/edge_peer.py in .venv-peer) at the
same batch size and sequence length and prints the ratios against it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from nodeprune.dtypes import AUTOCAST_DTYPES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


FILLER = " It was a long and ordinary day in the town, and nothing much happened."


def _batch(loaded, n: int, seed: int = 0, prefix_tokens: int = 0):
    """IOI prompt pairs; ``prefix_tokens`` prepends the same filler text to both prompts
    of a pair (alignment is kept) to grow the sequence length."""
    from dataclasses import replace

    from nodeprune.prompts import encode_examples
    from nodeprune.splits import generate_split
    from nodeprune.tasks import get_task

    examples = generate_split(get_task("ioi"), "train", n, seed, loaded.tokenizer)
    if prefix_tokens > 0:
        per = len(loaded.tokenizer.encode(FILLER, add_special_tokens=False))
        prefix = (FILLER * (prefix_tokens // per + 1)).strip()
        examples = [
            replace(e, clean=f"{prefix} {e.clean}", corrupted=f"{prefix} {e.corrupted}")
            for e in examples
        ]
    return encode_examples(examples, loaded.tokenizer)


def _load(model: str, dtype: str, device: str):
    import nodeprune

    if model.startswith("random:"):
        sys.path.insert(0, str(HERE))
        from _shapes import random_model

        return random_model(model.split(":", 1)[1], dtype, device)
    return nodeprune.load_model(model, dtype=dtype, device=device)


def worker(
    kind: str,
    model: str,
    batch_size: int,
    steps: int,
    device: str,
    dtype: str,
    prefix: int = 0,
    autocast: str = "off",
) -> dict:
    from contextlib import nullcontext

    import torch

    sys.path.insert(0, str(HERE))
    from _measure import measure

    from nodeprune.config import DiscoveryConfig
    from nodeprune.discovery import Discovery
    from nodeprune.intervention import GatedModel
    from nodeprune.objective import kl_full_to_circuit
    from nodeprune.splits import TaskData

    torch.manual_seed(0)
    loaded = _load(model, dtype, device)
    batch = _batch(loaded, batch_size, prefix_tokens=prefix).to(device)
    seq_len = int(batch.clean_ids.shape[1])
    if kind == "floor":
        gated = GatedModel(loaded)  # hooks stay in pass-through mode
        gated.remove()
        base = loaded.adapter.base_model(loaded.model)
        head = loaded.adapter.lm_head(loaded.model)
        embed = loaded.adapter.embedding(loaded.model)
        rows = torch.arange(len(batch), device=device)
        with torch.no_grad():
            ref = torch.log_softmax(
                head(
                    base(
                        input_ids=batch.clean_ids, attention_mask=batch.attention_mask
                    ).last_hidden_state[rows, batch.answer_pos]
                ).float(),
                -1,
            )

        mixed = AUTOCAST_DTYPES[autocast]

        def step() -> None:
            amp = torch.autocast(device.split(":")[0], mixed) if mixed else nullcontext()
            with amp:
                with torch.no_grad():
                    base(input_ids=batch.corrupted_ids, attention_mask=batch.attention_mask)
                resid = embed(batch.clean_ids).detach().requires_grad_(True)
                hidden = base(inputs_embeds=resid, attention_mask=batch.attention_mask)
                logits = head(hidden.last_hidden_state[rows, batch.answer_pos]).float()
            kl_full_to_circuit(ref, logits).mean().backward()

    else:
        cfg = DiscoveryConfig(
            model=model,
            steps=1000,
            batch_size=batch_size,
            n_train=batch_size,
            n_test=1,
            n_val=0,
            filter=False,
            device=device,
            dtype=dtype,
            autocast=autocast,
        )
        data = TaskData(train=batch.to("cpu"), validation=None, test=batch.to("cpu"), counts={})
        discovery = Discovery(loaded, cfg, data=data)

        def step() -> None:
            discovery.train_step()

    result = measure(step, device, steps)
    result.update(kind=kind, batch=batch_size, seq_len=seq_len, autocast=autocast)
    return result


def _run_worker(args: argparse.Namespace, kind: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--model",
        args.model,
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--prefix-tokens",
        str(args.prefix_tokens),
        "--autocast",
        args.autocast,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_peer(args: argparse.Namespace, seq_len: int) -> dict | None:
    python = ROOT / ".venv-peer" / "bin" / "python"
    script = HERE / "edge_peer.py"
    if not python.exists() or not script.exists():
        print("edge peer skipped: run bench/setup_edge_peer.sh first", file=sys.stderr)
        return None
    cmd = [
        str(python),
        str(script),
        "--json",
        "--batch",
        str(args.batch),
        "--seq-len",
        str(seq_len),
        "--steps",
        str(max(2, min(args.steps, 3))),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(f"edge peer failed:\n{out.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument(
        "--prefix-tokens",
        type=int,
        default=0,
        help="prepend about this many filler tokens to every prompt",
    )
    p.add_argument(
        "--autocast",
        default="off",
        choices=list(AUTOCAST_DTYPES),
        help="run both the floor and the discovery step under torch.autocast",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--peer", action="store_true", help="also measure the edge-level peer")
    p.add_argument("--worker", choices=["floor", "nodeprune"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(
            json.dumps(
                worker(
                    args.worker,
                    args.model,
                    args.batch,
                    args.steps,
                    args.device,
                    args.dtype,
                    args.prefix_tokens,
                    args.autocast,
                )
            )
        )
        return
    floor = _run_worker(args, "floor")
    ours = _run_worker(args, "nodeprune")
    result = {
        "model": args.model,
        "batch": args.batch,
        "seq_len": floor["seq_len"],
        "device": args.device,
        "autocast": args.autocast,
        "floor": floor,
        "nodeprune": ours,
        "memory_ratio": ours["peak_mb"] / floor["peak_mb"],
        "time_ratio": ours["step_s"] / floor["step_s"],
        "above_base_memory_ratio": ours["above_base_mb"] / max(floor["above_base_mb"], 1e-9),
    }
    if args.peer:
        peer = _run_peer(args, floor["seq_len"])
        if peer is not None:
            result["peer"] = peer
            result["peer_memory_ratio"] = peer["peak_mb"] / ours["peak_mb"]
            result["peer_time_ratio"] = peer["step_s"] / ours["step_s"]
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(
        f"model {args.model}, batch {args.batch}, sequence length {floor['seq_len']}, "
        f"device {args.device}, autocast {args.autocast}, "
        f"median of {args.steps} steps after a warm-up step"
    )
    print(f"{'':<26}{'step s':>10}{'peak MB':>10}{'above base MB':>15}")
    rows = [("floor (fwd + fwd/bwd)", floor), ("nodeprune step", ours)]
    if "peer" in result:
        rows.append((result["peer"].get("peer", "edge peer")[:25], result["peer"]))
    for name, r in rows:
        above = r.get("above_base_mb", float("nan"))
        print(f"{name:<26}{r['step_s']:>10.3f}{r['peak_mb']:>10.0f}{above:>15.0f}")
    above_ratio = result["above_base_memory_ratio"]
    print(
        f"nodeprune / floor: time {result['time_ratio']:.2f}x, peak memory "
        f"{result['memory_ratio']:.2f}x (above-base memory {above_ratio:.2f}x)"
    )
    if "peer" in result:
        print(
            f"edge peer / nodeprune: time {result['peer_time_ratio']:.1f}x, peak memory "
            f"{result['peer_memory_ratio']:.1f}x"
        )


if __name__ == "__main__":
    main()
