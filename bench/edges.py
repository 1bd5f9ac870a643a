"""Peak memory of the edge phase against the node phase and a full-model edge
formulation, at the same batch, on a randomly initialised model of a given shape.

Three steps (forward + backward through the gates), each in a fresh process so that one
phase's freed memory cannot hide in another's peak:

* ``node``: node discovery's step (hard-concrete gates on every default granularity);
* ``edge``: the edge phase's step over a node circuit that keeps ``--keep-heads`` of the
  heads (chosen at random, seeded) and ``--keep-mlps`` of the MLP blocks;
* ``edge_kept``: the same, keeping each head's own query/key/value input for the backward
  pass instead of recomputing it there (``EdgeModel(recompute=False)``, as before it
  recomputed them);
* ``full``: the same edge pass with every node of the model a candidate (Edge Pruning's
  formulation: one residual-stream difference per upstream node, gates on every edge),
  and ``full_kept`` without the recomputation.

Cost does not depend on the weights, so no checkpoint is loaded; the prompts are random
token ids (a corrupted copy with half its tokens replaced).

With ``--peer`` (SmolLM2 shape; needs ``.venv-peer``, built by ``bench/setup_edge_peer.sh``)
a fourth process runs auto-circuit's hard-concrete edge pruning (``bench/edge_peer.py``) at
the same shape, batch and length: the edge peer over every edge of the model. Its peak is
the process's ``ru_maxrss``, "above" its peak minus its memory once its model is built.

    python bench/edges.py                       # GPT-2-small shape, batch 16, 64 tokens
    python bench/edges.py --shape tiny-gpt2 --batch 2 --seq 16   # a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SHAPES = {
    # name: (family, config kwargs); vocabularies as the families ship them.
    "gpt2-small": ("gpt2", dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257)),
    "tiny-gpt2": ("gpt2", dict(n_layer=2, n_embd=64, n_head=4, vocab_size=512)),
    "smollm2-135m-shape": ("llama", dict(num_hidden_layers=30, hidden_size=576,
                                         num_attention_heads=9, num_key_value_heads=3,
                                         intermediate_size=1536, vocab_size=49152)),
}  # fmt: skip
PHASES = ("node", "edge", "edge_kept", "full", "full_kept")
#: bench/edge_peer.py's name of each shape it can build.
PEER_SHAPES = {"smollm2-135m-shape": "smollm2-135m"}
PEER_PYTHON = HERE.parent / ".venv-peer" / "bin" / "python"


def _tokenizer(vocab: int):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    words = {"<|endoftext|>": 0, **{f"t{i}": i for i in range(1, vocab)}}
    tok = Tokenizer(models.WordLevel(words, unk_token="<|endoftext|>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def _model(shape: str, device: str):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from nodeprune.models import wrap_model

    family, kwargs = SHAPES[shape]
    torch.manual_seed(0)
    if family == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_positions=1024, **kwargs))
    else:
        model = LlamaForCausalLM(LlamaConfig(tie_word_embeddings=True, **kwargs))
    return wrap_model(model.to(device), _tokenizer(kwargs["vocab_size"]), f"random:{shape}")


def run_phase(args: argparse.Namespace) -> dict:
    """One phase's step, measured in this process."""
    import torch
    from _measure import measure

    from nodeprune.ablations import ABLATIONS, Ablated
    from nodeprune.edges import EdgeGraph, EdgeModel
    from nodeprune.gates import GateSet, sample_gate
    from nodeprune.granularity import DEFAULT_GRANULARITIES
    from nodeprune.intervention import GatedModel

    loaded = _model(args.shape, args.device)
    dims = loaded.dims
    gated = GatedModel(loaded)
    g = torch.Generator().manual_seed(0)
    vocab = SHAPES[args.shape][1]["vocab_size"]
    clean = torch.randint(1, vocab, (args.batch, args.seq), generator=g).to(args.device)
    corrupted = clean.clone()
    swap = torch.rand(clean.shape, generator=g).to(args.device) < 0.5
    corrupted[swap] = torch.randint(1, vocab, (int(swap.sum()),), generator=g).to(args.device)
    mask = torch.ones_like(clean)
    pos = torch.full((args.batch,), args.seq - 1, device=args.device)
    info: dict = {"phase": args.phase}

    if args.phase == "node":
        gates = GateSet(dims, list(DEFAULT_GRANULARITIES)).to(args.device)
        info["gates"] = int(gates.log_alpha.numel())

        def step() -> None:
            ablated = Ablated(gated.record(corrupted, mask), ABLATIONS["corrupted"], True)
            logits = gated.gated_logits(clean, mask, pos, gates.sample(), ablated, True)
            logits.logsumexp(-1).mean().backward()

    else:
        if args.phase.startswith("full"):
            graph, node_gates = EdgeGraph.full(dims), {}
        else:
            heads = torch.rand(dims.n_layers, dims.n_heads, generator=g) < args.keep_heads
            mlps = torch.rand(dims.n_layers, generator=g) < args.keep_mlps
            kept = {"embedding": torch.ones(1), "attention_head": heads, "mlp_block": mlps}
            graph = EdgeGraph(dims, kept)
            like = next(loaded.model.parameters())
            node_gates = {
                "attention_head": heads.to(like),
                "mlp_block": mlps.to(like),
            }
            info["kept_heads"], info["kept_mlps"] = int(heads.sum()), int(mlps.sum())
        edges = EdgeModel(gated, graph, recompute=not args.phase.endswith("_kept"))
        log_alpha = torch.full((graph.n_edges,), 2.0, device=args.device, requires_grad=True)
        info["upstream_nodes"], info["gates"] = len(graph.upstream), graph.n_edges

        def step() -> None:
            ablated = Ablated(gated.record(corrupted, mask), ABLATIONS["corrupted"], True)
            split = graph.split(sample_gate(log_alpha))
            logits = edges.edge_logits(clean, mask, pos, node_gates, split, ablated)
            logits.logsumexp(-1).mean().backward()

    info.update(measure(step, args.device, args.steps))
    return info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="gpt2-small")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--keep-heads", type=float, default=0.15)
    p.add_argument("--keep-mlps", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true")
    p.add_argument("--peer", action="store_true", help="also auto-circuit's edge pruning")
    args = p.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args)))
        return
    rows = []
    for phase in PHASES:
        argv = [a for a in sys.argv[1:] if a != "--json"] + ["--phase", phase]
        out = subprocess.run(
            [sys.executable, __file__, *argv], check=True, capture_output=True, text=True
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # kept if a later one dies
    if args.peer:
        rows.append(_peer_row(args))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    by = {r["phase"]: r for r in rows}
    ratio = by["edge"]["above_base_mb"] / max(by["full"]["above_base_mb"], 1e-9)
    if args.json:
        print(json.dumps({"rows": rows, "edge_over_full_above_base": ratio}, indent=1))
        return
    print(f"{args.shape}, batch {args.batch} x {args.seq} tokens, {args.device}")
    print(f"{'phase':9} {'upstream':>8} {'gates':>9} {'step s':>8} {'peak MB':>9} {'above MB':>9}")
    for r in rows:
        print(
            f"{r['phase']:9} {r.get('upstream_nodes', '-'):>8} {r['gates']:>9} "
            f"{r['step_s']:>8.3f} {r['peak_mb']:>9.1f} {r['above_base_mb']:>9.1f}"
        )
    print(f"edge phase / full-model edges (memory above the loaded model): {ratio:.2f}")
    if "peer" in by:
        print(
            "edge phase / auto-circuit edge pruning: peak "
            f"{by['edge']['peak_mb'] / by['peer']['peak_mb']:.2f}, above the loaded model "
            f"{by['edge']['above_base_mb'] / max(by['peer']['above_base_mb'], 1e-9):.2f}"
        )


def _peer_row(args: argparse.Namespace) -> dict:
    """auto-circuit's edge pruning at this shape, batch and length, in its own venv."""
    if args.shape not in PEER_SHAPES:
        sys.exit(f"--peer: the peer builds {', '.join(PEER_SHAPES)} only, not {args.shape}")
    if not PEER_PYTHON.exists():
        sys.exit(f"--peer: {PEER_PYTHON} is missing; build it with bench/setup_edge_peer.sh")
    threads = os.environ.get("OMP_NUM_THREADS", "2")
    command = [str(PEER_PYTHON), str(HERE / "edge_peer.py"), "--shape", PEER_SHAPES[args.shape]]
    command += ["--batch", str(args.batch), "--seq-len", str(args.seq)]
    command += ["--steps", str(max(2, args.steps)), "--threads", threads, "--json"]
    command += ["--device", args.device]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:  # -9: killed, on this machine by the kernel's OOM killer
        sys.exit(f"--peer: {' '.join(command)} exited with {done.returncode}: {done.stderr[-500:]}")
    out = done.stdout
    peer = json.loads(out[out.index("{") :])
    return {
        "phase": "peer",
        "upstream_nodes": "-",
        "gates": peer["n_edges"],
        "step_s": peer["step_s"],
        "peak_mb": peer["peak_mb"],
        "above_base_mb": peer["peak_mb"] - peer["rss_after_model_mb"],
        "peer": peer["peer"],
    }


if __name__ == "__main__":
    main()
