"""What nodeprune needs to know about a model family: where its gated sites live.

An adapter never changes a module's code. It only names the stock Hugging Face
submodules on which nodeprune hangs forward hooks and pre-hooks:

* ``embedding``: the token embedding, whose output is the embedding node;
* ``attn_out_proj``: the attention output projection, whose *input* holds every
  head's output side by side (``n_heads * head_dim``): heads and attention neurons;
* ``mlp_down_proj``: the MLP down/out projection, whose input is the MLP hidden
  neurons;
* ``mlp``: the MLP block, whose output is the MLP output dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ModelDims:
    """The sizes that fix how many nodes each granularity has."""

    n_layers: int
    n_heads: int
    head_dim: int
    d_model: int
    d_mlp: int
    n_kv_heads: int

    def to_dict(self) -> dict[str, int]:
        return {
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "head_dim": self.head_dim,
            "d_model": self.d_model,
            "d_mlp": self.d_mlp,
            "n_kv_heads": self.n_kv_heads,
        }


class ArchitectureAdapter:
    """Base class: one small subclass per model family."""

    #: Family name shown to users (``llama``, ``gpt2``, ...).
    family: str = ""
    #: The ``config.model_type`` values this adapter handles.
    model_types: tuple[str, ...] = ()

    def dims(self, model: nn.Module) -> ModelDims:
        raise NotImplementedError

    def layers(self, model: nn.Module) -> list[nn.Module]:
        raise NotImplementedError

    def embedding(self, model: nn.Module) -> nn.Module:
        return model.get_input_embeddings()

    def attn_out_proj(self, layer: nn.Module) -> nn.Module:
        raise NotImplementedError

    def mlp(self, layer: nn.Module) -> nn.Module:
        raise NotImplementedError

    def mlp_down_proj(self, layer: nn.Module) -> nn.Module:
        raise NotImplementedError

    def base_model(self, model: nn.Module) -> nn.Module:
        """The transformer body, which returns the final-normed residual stream."""
        return model.base_model

    def lm_head(self, model: nn.Module) -> nn.Module:
        return model.get_output_embeddings()

    def hook_name(self, site: str, layer: int) -> str:
        """TransformerLens hook name of a site, for interoperability."""
        return {
            "embed": "hook_embed",
            "attn_z": f"blocks.{layer}.attn.hook_z",
            "mlp_hidden": f"blocks.{layer}.mlp.hook_post",
            "mlp_out": f"blocks.{layer}.hook_mlp_out",
        }[site]


def config_int(config: object, *names: str) -> int:
    """The first of ``names`` that the config defines (families name sizes differently)."""
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    raise AttributeError(f"config has none of {names}")
