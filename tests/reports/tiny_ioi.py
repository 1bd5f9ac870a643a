"""A tiny GPT-2 trained in-process on IOI prompts, so that a few heads matter.

A randomly initialised tiny model barely looks at its input (the KL between any two
circuits is ~0), which gives pruning nothing to find. Trained for a few hundred steps
on the answer token of IOI prompts, a 2-layer model (d_model 48) answers 80-90% of
them right on the seeds tried.
Shared by the report tests and tests/test_patching_validity.py (imported as
``reports.tiny_ioi`` so both get the same cached model).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from nodeprune.models import LoadedModel, wrap_model
from nodeprune.prompts import encode_examples
from nodeprune.tasks.ioi import IOITask

_CACHE: dict[tuple, LoadedModel] = {}


@contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and on a busy machine two threads that
    must meet at every op wait for each other far longer than the op takes."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def trained_ioi_gpt2(
    tokenizer, n_layers: int = 2, n_heads: int = 4, d_model: int = 48, steps: int = 400,
    seed: int = 0,
) -> LoadedModel:  # fmt: skip
    key = (id(tokenizer), n_layers, n_heads, d_model, steps, seed)
    if key not in _CACHE:
        with one_thread():
            _CACHE[key] = _train(tokenizer, n_layers, n_heads, d_model, steps, seed)
    return _CACHE[key]


def _train(tokenizer, n_layers: int, n_heads: int, d_model: int, steps: int, seed: int):
    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=n_layers, n_head=n_heads, n_embd=d_model, n_positions=64,
        vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    model = GPT2LMHeadModel(config)
    # Prompts of the task itself, tokenised once; only the answer token is trained on.
    pool = encode_examples(IOITask().generate(2048, random.Random(seed), tokenizer), tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = pool.select(torch.randint(0, len(pool), (32,), generator=gen))
        logits = model(input_ids=batch.clean_ids, attention_mask=batch.attention_mask).logits
        answer_logits = logits[torch.arange(len(batch)), batch.answer_pos]
        rows = torch.arange(len(batch))
        # The answer-vs-distractor term gets the model off the loss plateau where it only
        # knows which tokens are names (a few hundred steps sooner, on every seed tried).
        pair = torch.stack(
            [answer_logits[rows, batch.answer_ids], answer_logits[rows, batch.distractor_ids]], 1
        )
        loss = F.cross_entropy(answer_logits, batch.answer_ids) + F.cross_entropy(
            pair, torch.zeros(len(batch), dtype=torch.long)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return wrap_model(model, tokenizer, f"tiny-ioi-gpt2-{n_layers}x{n_heads}")
