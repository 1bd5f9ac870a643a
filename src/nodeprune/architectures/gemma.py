"""Gemma, Gemma 2 and Gemma 3 text models (Llama module names).

What the family adds, and why each needs nothing or one thing here:

* scaled embeddings: the scale is inside the embedding module, so the embedding node
  is the scaled embedding;
* ``head_dim`` that is not ``hidden / heads``: the sizes come from the config's
  ``head_dim`` and the output projection's input width;
* post-attention and post-feedforward norms: the MLP output site is the
  post-feedforward norm's output (see ``ArchitectureAdapter.mlp_paths``);
* sliding-window layers, attention soft-capping, QK norms: inside attention;
* final logit soft-capping (``tanh(logits / cap) * cap``): applied by the causal LM
  after its LM head, which nodeprune calls directly, so the head here applies it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .llama import LlamaAdapter


class SoftCappedHead(nn.Module):
    """The LM head followed by Gemma's final logit soft-capping."""

    def __init__(self, head: nn.Module, cap: float) -> None:
        super().__init__()
        self.head = head
        self.cap = float(cap)

    def forward(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.head(hidden) / self.cap) * self.cap


class GemmaAdapter(LlamaAdapter):
    family = "gemma"
    model_types = ("gemma", "gemma2", "gemma3_text")
    mlp_paths = ("post_feedforward_layernorm", "mlp")  # Gemma 1 has no post-norms
    notes = (
        "scaled embeddings, head_dim != hidden/heads, post-norms, sliding-window layers, "
        "logit soft-capping"
    )

    def lm_head(self, model: nn.Module) -> nn.Module:
        head = model.get_output_embeddings()
        cap = getattr(model.config, "final_logit_softcapping", None)
        return SoftCappedHead(head, cap) if cap else head
