"""Peak memory and time of one discovery step on a ~1B-parameter Llama-shaped model.

The model is randomly initialised (only memory and time matter here) with the shape
of a small Llama: hidden 2048, 16 layers, 32 heads / 8 KV heads, MLP 5632, untied
49152-token vocabulary (SmolLM2's tokenizer, from nodeprune's model cache). It shows
the memory model that the README's GPU estimates use:

    step memory = weights (P x bytes) + per-step activations
    activations  = tokens x layers x (d_model + d_mlp) x bytes x k

where tokens = batch x prompt length (clean prompts; the corrupted ones are recorded
without gradients) and k is fitted from the measured batch sizes.

    nice -n 10 python bench/large_model.py                      # bf16, batches 1 and 4
    nice -n 10 python bench/large_model.py --dtype float32 --batches 2 8
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import threading
import time
from dataclasses import dataclass

import psutil
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from nodeprune import Discovery, DiscoveryConfig
from nodeprune.large_models import enable_gradient_checkpointing
from nodeprune.models import DTYPES, load_tokenizer, wrap_model

GB = 1024**3
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Shape:
    """What memory depends on; ``params`` from the published model where known."""

    name: str
    layers: int
    d_model: int
    d_mlp: int
    heads: int
    kv_heads: int
    vocab: int
    params: float


BENCH_SHAPE = Shape("random Llama ~1B", 16, 2048, 5632, 32, 8, 49152, 0.0)
#: Public shapes (from each model's config.json) for the GPU estimates.
KNOWN_SHAPES = [
    Shape("Llama-3.2-3B", 28, 3072, 8192, 24, 8, 128256, 3.21e9),
    Shape("Llama-3.1-8B", 32, 4096, 14336, 32, 8, 128256, 8.03e9),
    Shape("Qwen2.5-14B", 48, 5120, 13824, 40, 8, 152064, 14.77e9),
    Shape("Qwen2.5-32B", 64, 5120, 27648, 40, 8, 152064, 32.76e9),
    Shape("Llama-3.1-70B", 80, 8192, 28672, 64, 8, 128256, 70.55e9),
    Shape("Qwen2.5-72B", 80, 8192, 29568, 64, 8, 152064, 72.71e9),
]


class PeakRSS:
    """Samples this process's resident memory every millisecond or so."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.001)

    def __enter__(self) -> PeakRSS:
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def settle() -> int:
    """Free what can be freed (glibc keeps freed pages otherwise); return RSS."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    return psutil.Process().memory_info().rss


def build_model(shape: Shape, dtype: torch.dtype, seed: int = 0) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.d_model,
        intermediate_size=shape.d_mlp,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build in the target dtype: no fp32 copy first
    try:
        return LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)


def tokenizer():
    return load_tokenizer("smollm2-135m")


def measure_step(loaded, dtype: str, batch: int, checkpointing: bool) -> dict[str, float]:
    cfg = DiscoveryConfig(
        model=loaded.name, task="ioi", n_train=batch, n_val=0, n_test=batch, filter=False,
        batch_size=batch, eval_batch_size=batch, steps=10, dtype=dtype,
    )  # fmt: skip
    # Its workbench hooks the model and tells gradient checkpointing to replay the gates;
    # leaving the block takes them off again.
    with Discovery(loaded, cfg) as discovery:
        discovery.train_step()  # warm-up: first-touch allocations, thread pools
        base = settle()
        start = time.perf_counter()
        with PeakRSS() as peak:
            discovery.train_step()
        seconds = time.perf_counter() - start
        tokens = int(discovery.data.train.clean_ids.shape[1])
    return {"tokens": tokens, "step_gb": (peak.peak - base) / GB, "seconds": seconds}


def activation_gb(shape: Shape, tokens: int, k: float, nbytes: int) -> float:
    return tokens * shape.layers * (shape.d_model + shape.d_mlp) * nbytes * k / GB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", default="bfloat16", choices=list(DTYPES))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    nbytes = BYTES[args.dtype]
    tok = tokenizer()

    before = settle()
    t0 = time.perf_counter()
    model = build_model(BENCH_SHAPE, DTYPES[args.dtype])
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    weights_gb = (settle() - before) / GB
    loaded = wrap_model(model, tok, "random-llama-1b")
    print(f"model: {BENCH_SHAPE.name}, {params / 1e9:.3f} B parameters, {args.dtype}")
    print(
        f"weights: predicted {params * nbytes / GB:.2f} GiB, measured (RSS) {weights_gb:.2f} GiB; "
        f"built in {build_s:.1f} s; torch threads {torch.get_num_threads()}"
    )

    rows = []
    for checkpointing in (False, True):
        if checkpointing:
            enable_gradient_checkpointing(loaded.model)
        for batch in args.batches:
            r = measure_step(loaded, args.dtype, batch, checkpointing)
            rows.append({"batch": batch, "ckpt": checkpointing, **r})

    # k: measured step memory per (token x layer x (d_model + d_mlp) x bytes), fitted
    # through the origin, separately with and without checkpointing.
    unit = [
        r["batch"] * r["tokens"] * BENCH_SHAPE.layers
        * (BENCH_SHAPE.d_model + BENCH_SHAPE.d_mlp) * nbytes / GB
        for r in rows
    ]  # fmt: skip
    k = {}
    for ckpt in (False, True):
        pts = [(u, r["step_gb"]) for u, r in zip(unit, rows, strict=True) if r["ckpt"] == ckpt]
        k[ckpt] = sum(u * m for u, m in pts) / sum(u * u for u, _ in pts)

    print()
    print(f"{'batch':>5} {'tokens':>6} {'ckpt':>5} {'step peak (GiB)':>15} {'k x model (GiB)':>15}"
          f" {'total (GiB)':>11} {'step (s)':>9}")  # fmt: skip
    for u, r in zip(unit, rows, strict=True):
        total = weights_gb + r["step_gb"]
        print(
            f"{r['batch']:>5} {r['tokens']:>6} {str(r['ckpt']):>5} {r['step_gb']:>15.2f}"
            f" {k[r['ckpt']] * u:>15.2f} {total:>11.2f} {r['seconds']:>9.1f}"
        )
    print(
        f"\nfitted k = {k[False]:.1f} without checkpointing, {k[True]:.1f} with "
        "(activation bytes per token x layer x (d_model + d_mlp) x dtype bytes)"
    )

    print(
        "\nGPU estimates from this memory model, in GiB (bf16 weights, fp32 gates, + 3 GiB for "
        "the CUDA context and allocator; NOT measured on a GPU).\nActivations at batch x tokens:"
    )
    print(
        f"{'model':<15}{'weights':>8}{'16x32':>7}{'64x128':>8}{'64x128 ckpt':>12}"
        f"{'80 GB (16x32)':>15}{'141 GB (16x32)':>16}"
    )
    for shape in KNOWN_SHAPES:
        w = shape.params * 2 / GB
        small = activation_gb(shape, 16 * 32, k[False], 2)
        big = activation_gb(shape, 64 * 128, k[False], 2)
        big_ckpt = activation_gb(shape, 64 * 128, k[True], 2)
        # Usable memory: an 80 GB H100 shows 79.2 GiB, a 141 GB H200 about 139 GiB.
        fits = ["fits" if w + small + 3 <= cap else "no" for cap in (79.2, 139.0)]
        print(
            f"{shape.name:<15}{w:>8.1f}{small:>7.1f}{big:>8.1f}{big_ckpt:>12.1f}"
            f"{fits[0]:>15}{fits[1]:>16}"
        )


if __name__ == "__main__":
    main()
