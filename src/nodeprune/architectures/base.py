"""What nodeprune needs to know about a model family: where its gated sites live.

An adapter never changes a module's code. It only names the stock Hugging Face
submodules on which nodeprune hangs forward hooks and pre-hooks, as dotted paths:

* ``embedding``: the token embedding, whose output is the embedding node;
* ``attn_out_path`` (from a block): the attention output projection, whose *input*
  holds every head's output side by side (``n_heads * head_dim``): heads and
  attention neurons;
* ``mlp_down_path``: the MLP down/out projection, whose input is the MLP hidden
  neurons;
* ``mlp_paths``: the module whose output is the MLP block's output (the first of
  them that the block has).
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
    #: Routed experts per layer and each one's hidden width (0 and 0 for dense models).
    #: In a mixture-of-experts model ``d_mlp`` counts the shared expert's hidden
    #: neurons (Qwen2-MoE), 0 where there is none.
    n_experts: int = 0
    d_expert: int = 0

    def to_dict(self) -> dict[str, int]:
        out = {
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "head_dim": self.head_dim,
            "d_model": self.d_model,
            "d_mlp": self.d_mlp,
            "n_kv_heads": self.n_kv_heads,
        }
        if self.n_experts:  # dense models' files stay as they were
            out.update(n_experts=self.n_experts, d_expert=self.d_expert)
        return out


def submodule(root: nn.Module, path: str, prefix: str = "") -> nn.Module:
    """``root``'s module at dotted ``path``; a missing step names the full path."""
    module = root
    walked = prefix
    for part in path.split("."):
        walked = f"{walked}.{part}" if walked else part
        child = getattr(module, part, None) if not part.isdigit() else None
        if part.isdigit() and isinstance(module, nn.ModuleList | nn.Sequential):
            child = module[int(part)] if int(part) < len(module) else None
        if not isinstance(child, nn.Module):
            raise AttributeError(f"no module {walked}")
        module = child
    return module


def in_features(module: nn.Module) -> int | None:
    """The input width of a projection (``nn.Linear`` or transformers' ``Conv1D``)."""
    n = getattr(module, "in_features", None)
    if n is None and hasattr(module, "nf"):  # transformers Conv1D stores weight [in, out]
        n = module.weight.shape[0]
    return None if n is None else int(n)


def out_features(module: nn.Module) -> int | None:
    n = getattr(module, "out_features", None)
    if n is None and hasattr(module, "nf"):
        n = module.nf
    return None if n is None else int(n)


def config_int(config: object, *names: str) -> int:
    """The first of ``names`` that the config defines (families name sizes differently)."""
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    raise AttributeError(f"config has none of {names}")


class ArchitectureAdapter:
    """Base class: one small subclass per model family, mostly module paths."""

    #: Family name shown to users (``llama``, ``gpt2``, ...).
    family: str = ""
    #: The ``config.model_type`` values this adapter handles, each verified by
    #: tests/architectures/test_conformance.py.
    model_types: tuple[str, ...] = ()
    #: Dotted path from the causal-LM module to the list of transformer blocks.
    layers_path: str = ""
    #: Paths from one block.
    attn_out_path: str = ""
    mlp_down_path: str = ""
    #: The first of these that a block has is its MLP output site. A post-feedforward
    #: norm (Gemma 2/3, OLMo 2) comes first: its output is what the MLP adds to the
    #: residual stream, so gating it scales the MLP's contribution, where gating the
    #: raw MLP output would be undone by the norm (RMSNorm(m * x) == RMSNorm(x)).
    mlp_paths: tuple[str, ...] = ("mlp",)
    #: What the family's blocks do that the adapter handles, for ``nodeprune models``.
    notes: str = ""
    #: Sites whose tensor the block changes in place after the hook has seen it, so a
    #: recording must copy it (every other site is recorded by reference, for free).
    sites_modified_in_place: tuple[str, ...] = ()

    # -- module lookup ------------------------------------------------------------
    def layers(self, model: nn.Module) -> list[nn.Module]:
        return list(submodule(model, self.layers_path))

    def embedding(self, model: nn.Module) -> nn.Module:
        return model.get_input_embeddings()

    def attn_out_proj(self, layer: nn.Module) -> nn.Module:
        return submodule(layer, self.attn_out_path)

    def mlp(self, layer: nn.Module) -> nn.Module:
        for path in self.mlp_paths[:-1]:
            try:
                return submodule(layer, path)
            except AttributeError:
                continue
        return submodule(layer, self.mlp_paths[-1])

    def mlp_down_proj(self, layer: nn.Module) -> nn.Module | None:
        """The module whose input is the MLP hidden neurons (None: the family has none,
        as a mixture of experts without a shared expert)."""
        return submodule(layer, self.mlp_down_path) if self.mlp_down_path else None

    def experts(self, layer: nn.Module) -> nn.Module | None:
        """The fused routed-experts module of a mixture-of-experts block (None: dense)."""
        return None

    def base_model(self, model: nn.Module) -> nn.Module:
        """The transformer body, which returns the final-normed residual stream."""
        return model.base_model

    def lm_head(self, model: nn.Module) -> nn.Module:
        """Final hidden state -> the logits the causal LM returns."""
        return model.get_output_embeddings()

    def pattern(self, model: nn.Module | None = None) -> str:
        """The hooked modules, for messages and ``nodeprune models``; with ``model``,
        the MLP output module its first block has."""
        block = f"{self.layers_path}.{{i}}"
        mlp = " or ".join(self.mlp_paths)
        if model is not None:
            first = self.layers(model)[0]
            mlp = next(p for p in self.mlp_paths if self.mlp(first) is getattr(first, p, None))
        return f"{block}.{self.attn_out_path}, {block}.{self.mlp_down_path}, {block}.{mlp}"

    # -- sizes ----------------------------------------------------------------------
    def n_kv_heads(self, config: object, n_heads: int) -> int:
        for name in ("num_key_value_heads", "num_kv_heads"):
            if getattr(config, name, None):
                return int(getattr(config, name))
        return n_heads

    def dims(self, model: nn.Module) -> ModelDims:
        """Sizes from the config, widths from the hooked modules themselves: what the
        hooks see is what the gates must match."""
        c = model.config
        layers = self.layers(model)
        n_heads = config_int(c, "num_attention_heads", "n_head", "num_heads")
        d_model = config_int(c, "hidden_size", "n_embd", "d_model")
        attn_width = in_features(self.attn_out_proj(layers[0])) or d_model
        head_dim = getattr(c, "head_dim", None) or attn_width // n_heads
        d_mlp = in_features(self.mlp_down_proj(layers[0]))
        if d_mlp is None:
            d_mlp = config_int(c, "intermediate_size", "n_inner", "ffn_hidden_size")
        return ModelDims(
            n_layers=len(layers),
            n_heads=n_heads,
            head_dim=int(head_dim),
            d_model=d_model,
            d_mlp=d_mlp,
            n_kv_heads=self.n_kv_heads(c, n_heads),
        )

    def problems(self, model: nn.Module) -> list[str]:
        """Why this adapter cannot gate ``model`` (empty: it can): missing modules, or
        sizes the config and the modules disagree on."""
        try:
            layers = self.layers(model)
            if not layers:
                return [f"{self.layers_path} is empty"]
            for i, layer in enumerate(layers):
                prefix = f"{self.layers_path}.{i}"
                for path in (self.attn_out_path, self.mlp_down_path):
                    if path:
                        submodule(layer, path, prefix)
                self.mlp(layer)
            dims = self.dims(model)
        except AttributeError as exc:
            return [_with_moe_hint(str(exc), model, self)]
        out = []
        for i, layer in enumerate(layers):
            width = in_features(self.attn_out_proj(layer))
            if width is not None and width != dims.n_heads * dims.head_dim:
                out.append(
                    f"layer {i}'s {self.attn_out_path} takes {width} inputs, not n_heads x "
                    f"head_dim = {dims.n_heads} x {dims.head_dim}"
                )
            hidden = in_features(self.mlp_down_proj(layer))
            if hidden is not None and hidden != dims.d_mlp:
                out.append(
                    f"layer {i}'s {self.mlp_down_path} takes {hidden} inputs, layer 0's "
                    f"{dims.d_mlp} (MLP widths that differ by layer are not supported)"
                )
            written = out_features(self.mlp_down_proj(layer))
            if written is not None and written != dims.d_model:
                out.append(
                    f"layer {i}'s {self.mlp_down_path} writes {written} outputs, not the "
                    f"hidden size {dims.d_model}"
                )
        return out

    def hook_name(self, site: str, layer: int) -> str:
        """TransformerLens hook name of a site, for interoperability."""
        return {
            "embed": "hook_embed",
            "attn_z": f"blocks.{layer}.attn.hook_z",
            "mlp_hidden": f"blocks.{layer}.mlp.hook_post",
            "mlp_out": f"blocks.{layer}.hook_mlp_out",
        }[site]


def _with_moe_hint(message: str, model: nn.Module, adapter: ArchitectureAdapter) -> str:
    """A missing MLP projection in a mixture-of-experts block says so."""
    try:
        mlp = adapter.mlp(adapter.layers(model)[0])
    except (AttributeError, IndexError):
        return message
    if hasattr(mlp, "experts"):
        return (
            f"{message} (its MLP is a mixture of experts, {type(mlp).__name__}, laid out "
            "unlike the verified mixture-of-experts families')"
        )
    return message
