"""Cost of one step of an edge-level peer: auto-circuit's hard-concrete edge pruning.

Runs auto-circuit's "Subnetwork Edge Probing" (learned hard-concrete masks on every edge of
the factorized graph, with separate Q/K/V destinations; `auto_circuit.prune_algos`) on a
randomly initialised TransformerLens model of a given shape, and reports the wall time of
one optimiser step and the peak memory of the process. Weights do not matter for cost, so
no checkpoint is needed.

This needs its own virtual environment (auto-circuit pins TransformerLens < 3, which clashes
with nodeprune's transformers); build it with `bench/setup_edge_peer.sh` and run:

    .venv-peer/bin/python bench/edge_peer.py [--shape smollm2-135m|tiny] [--batch 8]
        [--seq-len 16] [--steps 3] [--json]

How steps are timed: the algorithm runs unmodified, through its own entry point
`subnetwork_probing_prune_scores`, with one batch per epoch (so one epoch = one optimiser
step). It builds its optimiser as `torch.optim.adam.Adam(...)`, a module attribute that
torch 2.13 no longer sets; we supply that attribute with a subclass of `torch.optim.Adam`
that records a timestamp when it is built and after every `step()`. The time between two
consecutive timestamps is exactly one iteration of its loop (masked forward on the
corrupted prompts, KL to the cached clean logits, L0 term, backward, Adam step). What it
does once before the loop (clean logits and the ablation activations) is reported as setup.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import types
from dataclasses import dataclass
from importlib.metadata import version
from itertools import pairwise
from typing import Any

import torch
import torch.optim

# These take a couple of seconds and pull in their dependencies; import them before the
# baseline memory reading so that the model's share of the RSS is not blurred by imports.
import transformer_lens as tl
from auto_circuit.data import PromptDataLoader, PromptDataset
from auto_circuit.prune_algos import subnetwork_probing
from auto_circuit.prune_algos.prune_algos import SUBNETWORK_EDGE_PROBING_PRUNE_ALGO
from auto_circuit.utils.graph_utils import patchable_model


@dataclass(frozen=True)
class Shape:
    """The dimensions of a Llama-family decoder (grouped-query attention, SwiGLU, RMSNorm)."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int
    rotary_base: int
    n_ctx: int


SHAPES: dict[str, Shape] = {
    # SmolLM2-135M. n_ctx is 2048, not its 8192: TransformerLens allocates an
    # n_ctx x n_ctx causal mask per layer (64 MB each at 8192), which a real run of the
    # peer would not need for 16-token prompts and which would inflate its memory.
    "smollm2-135m": Shape(30, 576, 9, 3, 64, 1536, 49152, 100_000, 2048),
    # For a quick check that everything runs (seconds); keeps grouped-query attention.
    "tiny": Shape(2, 64, 4, 2, 16, 128, 512, 10_000, 128),
}


# The settings of the registered algorithm worth reporting next to its cost.
ALGORITHM_KEYS = ("learning_rate", "regularize_lambda", "mask_fn")


class StepTimedAdam(torch.optim.Adam):
    """torch.optim.Adam that timestamps its construction and the end of every step."""

    stamps: list[float] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        StepTimedAdam.stamps = [time.perf_counter()]

    def step(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        loss = super().step(*args, **kwargs)
        StepTimedAdam.stamps.append(time.perf_counter())
        return loss


def current_rss_mb() -> float:
    """Resident set size of this process now, from /proc (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_model(shape: Shape, device: str) -> tl.HookedTransformer:
    """A randomly initialised HookedTransformer of `shape`, set up as auto-circuit needs."""
    cfg = tl.HookedTransformerConfig(
        n_layers=shape.n_layers,
        d_model=shape.d_model,
        n_heads=shape.n_heads,
        n_key_value_heads=shape.n_kv_heads,
        d_head=shape.d_head,
        d_mlp=shape.d_mlp,
        d_vocab=shape.d_vocab,
        n_ctx=shape.n_ctx,
        act_fn="silu",
        gated_mlp=True,
        normalization_type="RMS",
        final_rms=True,
        eps=1e-5,
        positional_embedding_type="rotary",
        rotary_dim=shape.d_head,
        rotary_base=shape.rotary_base,
        original_architecture="LlamaForCausalLM",
        device=device,
        seed=0,
    )
    model = tl.HookedTransformer(cfg)
    # SmolLM2 ties the unembedding to the embedding; TransformerLens keeps a separate
    # W_U. Share the storage so the model has SmolLM2's size (weights are frozen anyway).
    model.unembed.W_U = torch.nn.Parameter(model.embed.W_E.detach().T)
    # The flags auto-circuit's own task loader sets (auto_circuit/tasks.py), written to
    # cfg directly as it does: set_use_attn_in refuses grouped-query attention.
    model.cfg.use_attn_result = True
    model.cfg.use_attn_in = True
    model.cfg.use_split_qkv_input = True
    model.cfg.use_hook_mlp_in = True
    # Per-head K/V inputs need the grouped key/value heads expanded to one per query head.
    model.set_ungroup_grouped_query_attention(True)
    model.eval()
    for param in model.parameters():
        param.requires_grad = False
    return model


def synthetic_loader(
    d_vocab: int, batch: int, seq_len: int, device: str, seed: int = 0
) -> PromptDataLoader:
    """One batch of random prompt pairs; each corrupt prompt differs from its clean one in
    two positions (like an IOI name swap), answers are single random tokens."""
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, d_vocab, (batch, seq_len), generator=gen)
    corrupt = clean.clone()
    for pos in (seq_len // 3, seq_len - 2):
        corrupt[:, pos] = (
            clean[:, pos] + 1 + torch.randint(0, d_vocab - 1, (batch,), generator=gen)
        ) % d_vocab
    answers = list(torch.randint(0, d_vocab, (batch, 1), generator=gen).to(device))
    wrong_answers = list(torch.randint(0, d_vocab, (batch, 1), generator=gen).to(device))
    dataset = PromptDataset(clean.to(device), corrupt.to(device), answers, wrong_answers)
    return PromptDataLoader(dataset, seq_len=None, diverge_idx=0, batch_size=batch, shuffle=False)


def run(shape_name: str, batch: int, seq_len: int, steps: int, device: str) -> dict[str, Any]:
    shape = SHAPES[shape_name]
    rss_before_model = current_rss_mb()
    model = build_model(shape, device)
    n_params = sum(p.numel() for p in model.parameters() if p is not model.unembed.W_U)
    # Edge graph: factorized (residual stream split into one source per head / MLP),
    # separate Q, K, V destinations, all positions patched together, loss at the last token.
    patchable = patchable_model(
        model,
        factorized=True,
        slice_output="last_seq",
        seq_len=None,
        separate_qkv=True,
        device=torch.device(device),
    )
    rss_after_model = current_rss_mb()
    loader = synthetic_loader(shape.d_vocab, batch, seq_len, device)

    # auto-circuit calls torch.optim.adam.Adam, which torch 2.13 lacks; supply a timed Adam.
    torch.optim.adam = types.SimpleNamespace(Adam=StepTimedAdam)  # type: ignore[attr-defined]
    # The registered algorithm's settings (lr, lambda, hard-concrete masks), minus its plot.
    settings = dict(SUBNETWORK_EDGE_PROBING_PRUNE_ALGO.func.keywords)
    settings.update(epochs=steps, show_train_graph=False)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    subnetwork_probing.subnetwork_probing_prune_scores(patchable, loader, None, **settings)
    total_s = time.perf_counter() - start
    stamps = StepTimedAdam.stamps
    step_times = [b - a for a, b in pairwise(stamps)]
    if len(step_times) != steps:
        raise RuntimeError(f"expected {steps} optimiser steps, timed {len(step_times)}")
    result: dict[str, Any] = {
        "peer": f"auto-circuit {version('auto-circuit')} edge hard-concrete",
        "n_edges": patchable.n_edges,
        "step_s": statistics.median(step_times[1:] if steps > 1 else step_times),
        "peak_mb": peak_rss_mb(),
        "batch": batch,
        "seq_len": seq_len,
        "shape": shape_name,
        "first_step_s": step_times[0],
        "step_times_s": step_times,
        "setup_s": stamps[0] - start,
        "total_s": total_s,
        "rss_before_model_mb": rss_before_model,
        "rss_after_model_mb": rss_after_model,
        "n_params": n_params,
        "device": device,
        "threads": torch.get_num_threads(),
        "versions": {name: version(name) for name in ("auto-circuit", "transformer-lens", "torch")},
        "algorithm": {key: settings[key] for key in ALGORITHM_KEYS},
    }
    if device.startswith("cuda"):
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def print_table(result: dict[str, Any]) -> None:
    rows = [
        ("peer", result["peer"]),
        ("shape", f"{result['shape']} ({result['n_params'] / 1e6:.1f}M parameters)"),
        ("edges", f"{result['n_edges']:,}"),
        ("batch x seq_len", f"{result['batch']} x {result['seq_len']}"),
        ("step time (median after the first)", f"{result['step_s']:.2f} s"),
        ("first step", f"{result['first_step_s']:.2f} s"),
        ("setup (clean logits + ablations)", f"{result['setup_s']:.2f} s"),
        ("RSS before the model", f"{result['rss_before_model_mb']:.0f} MB"),
        ("RSS after the patchable model", f"{result['rss_after_model_mb']:.0f} MB"),
        ("peak RSS", f"{result['peak_mb']:.0f} MB"),
    ]
    if "cuda_peak_mb" in result:
        rows.append(("peak CUDA memory", f"{result['cuda_peak_mb']:.0f} MB"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="smollm2-135m")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="optimiser steps (>= 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is not counted)")
    if args.seq_len < 4:
        parser.error("--seq-len must be at least 4")
    torch.set_num_threads(args.threads)
    result = run(args.shape, args.batch, args.seq_len, args.steps, args.device)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    sys.exit(main())
