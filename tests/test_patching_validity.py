"""Validity: the heads that pruning keeps are the heads whose activation patching moves
the model most.

On a tiny GPT-2 trained in-process on IOI (tests/reports/tiny_ioi.py), every head is
patched on its own: its slice of the attention output projection's input (TransformerLens'
``hook_z``) is replaced by its value on the corrupted prompt, with plain forward hooks
that share no code with nodeprune's gating. The effect of a head is the KL between the
full model's answer distribution and the patched one. Discovery never sees these
effects; its final head log-alphas should rank the heads the same way.
"""

from __future__ import annotations

import random

import pytest
import torch
from reports.tiny_ioi import one_thread, trained_ioi_gpt2

from nodeprune import Discovery, DiscoveryConfig
from nodeprune.metrics import spearman
from nodeprune.metrics.ground_truth import head_scores
from nodeprune.prompts import encode_examples
from nodeprune.tasks.ioi import IOITask


@torch.no_grad()
def patching_effects(loaded, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per head [L, H]: KL(full || patched) and the drop in logit difference."""
    model, dims = loaded.model, loaded.dims
    blocks = model.transformer.h
    rows = torch.arange(len(batch))
    corrupted: dict[int, torch.Tensor] = {}

    def record(layer: int):
        def hook(module, args):
            corrupted[layer] = args[0].detach().clone()

        return hook

    handles = [b.attn.c_proj.register_forward_pre_hook(record(i)) for i, b in enumerate(blocks)]
    model(input_ids=batch.corrupted_ids, attention_mask=batch.attention_mask)
    for h in handles:
        h.remove()

    def answer_logits() -> torch.Tensor:
        out = model(input_ids=batch.clean_ids, attention_mask=batch.attention_mask).logits
        return out[rows, batch.answer_pos].float()

    def logit_diff(logits: torch.Tensor) -> torch.Tensor:
        return logits[rows, batch.answer_ids] - logits[rows, batch.distractor_ids]

    full = answer_logits()
    full_lp = full.log_softmax(-1)
    kl = torch.zeros(dims.n_layers, dims.n_heads)
    ld_drop = torch.zeros(dims.n_layers, dims.n_heads)
    width = dims.head_dim
    for layer in range(dims.n_layers):
        for head in range(dims.n_heads):
            cols = slice(head * width, (head + 1) * width)

            def patch(module, args, layer=layer, cols=cols):
                x = args[0].clone()
                x[..., cols] = corrupted[layer][..., cols]
                return (x, *args[1:])

            handle = blocks[layer].attn.c_proj.register_forward_pre_hook(patch)
            patched = answer_logits()
            handle.remove()
            kl[layer, head] = (full_lp.exp() * (full_lp - patched.log_softmax(-1))).sum(-1).mean()
            ld_drop[layer, head] = (logit_diff(full) - logit_diff(patched)).mean()
    return kl, ld_drop


@pytest.mark.parametrize(
    "granularities",
    [["attention_head"], None],
    ids=["heads-only", "all-granularities"],
)
def test_pruning_ranks_heads_like_activation_patching(tokenizer, granularities):
    loaded = trained_ioi_gpt2(tokenizer)
    task = IOITask()
    batch = encode_examples(task.generate(96, random.Random(1000), tokenizer), tokenizer)
    with one_thread():
        full = loaded.model(input_ids=batch.clean_ids, attention_mask=batch.attention_mask)
        rows = torch.arange(len(batch))
        logits = full.logits[rows, batch.answer_pos]
        accuracy = float((task.correct(logits, batch)).float().mean())
        assert accuracy > 0.7, f"the tiny model did not learn IOI (accuracy {accuracy:.2f})"
        kl, ld_drop = patching_effects(loaded, batch)
        cfg = DiscoveryConfig(
            model=loaded.name, steps=100, n_train=64, n_val=0, n_test=64, batch_size=32,
            lr=0.1, lam=0.9, init_spread=0.0, seed=0,
        )  # fmt: skip
        if granularities:
            cfg.granularities = granularities
        circuit = Discovery(loaded, cfg).run(progress=False)
    scores = torch.as_tensor(head_scores(circuit))
    kept = circuit.masks["attention_head"]
    rho_kl = spearman(kl.flatten().tolist(), scores.flatten().tolist())
    rho_ld = spearman(ld_drop.abs().flatten().tolist(), scores.flatten().tolist())
    print(
        f"\n[{'+'.join(circuit.enabled)}] full-model accuracy {accuracy:.2f}; "
        f"Spearman(patching KL, log-alpha) = {rho_kl:.3f}, "
        f"Spearman(|patching logit-diff drop|, log-alpha) = {rho_ld:.3f}\n"
        f"patching KL per head:\n{kl.numpy().round(3)}\nfinal head log-alpha:\n"
        f"{scores.numpy().round(2)}\nkept:\n{kept.int().numpy()}"
    )
    assert rho_kl > 0.6
    assert rho_ld > 0.3
    # The head whose patching matters most is kept, and kept heads matter more on average.
    top = divmod(int(kl.argmax()), loaded.dims.n_heads)
    assert kept[top]
    if (~kept).any():
        assert kl[kept].mean() > kl[~kept].mean()
