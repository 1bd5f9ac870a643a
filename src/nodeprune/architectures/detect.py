"""Which adapter gates a model: its registered one, or one whose pattern it follows."""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from torch import nn

from ..errors import NodepruneError
from . import ADAPTER_LIST, ADAPTERS, supported_model_types
from .base import ArchitectureAdapter

_ADD_ONE = "adding a family is a small adapter in src/nodeprune/architectures/"


def _notice(message: str) -> None:
    print(f"nodeprune: note: {message}", file=sys.stderr)


def get_adapter(model: nn.Module, notice: Callable[[str], None] = _notice) -> ArchitectureAdapter:
    """The adapter of ``model``'s ``config.model_type``, or else the first adapter
    whose modules and logits fit it (with a one-line ``notice``)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    adapter = ADAPTERS.get(model_type)
    if adapter is not None:
        problems = adapter.problems(model)
        if problems:
            raise NodepruneError(
                f"model type {model_type!r} does not have the layout of the {adapter.family} "
                f"adapter: {'; '.join(problems)}"
            )
        return adapter
    tried: list[tuple[ArchitectureAdapter, list[str]]] = []
    for candidate in ADAPTER_LIST:
        problems = candidate.problems(model)
        if not problems and not logits_match(model, candidate):
            problems = [
                "its logits are not the LM head of the final hidden state (a transform "
                "after the head, such as scaling or soft-capping, that no adapter applies)"
            ]
        if not problems:
            notice(
                f"model type {model_type!r} is not among the verified ones (nodeprune "
                f"models); its modules follow the {candidate.family} pattern "
                f"({candidate.pattern()}), so the {candidate.family} adapter gates it"
            )
            return candidate
        tried.append((candidate, problems))
    raise NodepruneError(_unsupported(model, model_type, tried))


def _unsupported(
    model: nn.Module, model_type: object, tried: list[tuple[ArchitectureAdapter, list[str]]]
) -> str:
    """Name what is missing for the patterns whose blocks the model has."""
    near = []
    for adapter, problems in tried:
        try:
            adapter.layers(model)
        except (AttributeError, TypeError):
            continue
        if adapter.family not in {a.family for a, _ in near}:
            near.append((adapter, problems))
    if near:
        why = "; ".join(f"{a.family} pattern: {', '.join(p)}" for a, p in near)
    else:
        paths = sorted({a.layers_path for a, _ in tried})
        why = f"its blocks are at none of the known paths ({', '.join(paths)})"
    return (
        f"architecture {model_type!r} is not supported: {why}. Verified model types: "
        f"{', '.join(supported_model_types())}; {_ADD_ONE}."
    )


@torch.no_grad()
def logits_match(model: nn.Module, adapter: ArchitectureAdapter) -> bool:
    """Whether ``adapter``'s LM head on the body's last hidden state gives the model's
    own logits, on a four-token probe (one forward pass each way)."""
    weight = adapter.embedding(model).weight
    ids = ((torch.arange(4, device=weight.device) * 7 + 1) % weight.shape[0]).unsqueeze(0)
    training = model.training
    model.eval()
    try:
        full = model(input_ids=ids).logits[0].float()
        hidden = adapter.base_model(model)(input_ids=ids).last_hidden_state[0]
        ours = adapter.lm_head(model)(hidden).float().to(full.device)
    except (AttributeError, TypeError, RuntimeError):
        return False
    finally:
        model.train(training)
    tolerance = 1e-4 * max(1.0, float(full.abs().max()))
    return ours.shape == full.shape and float((ours - full).abs().max()) <= tolerance
