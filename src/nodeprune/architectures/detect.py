"""Which adapter gates a model: its registered one, or one whose pattern it follows."""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from torch import nn

from ..errors import NodepruneError
from .base import ArchitectureAdapter
from .registry import ADAPTER_LIST, ADAPTERS, supported_model_types

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
        if not problems:
            problems = _logits_problems(model, candidate)
        if not problems:
            notice(
                f"model type {model_type!r} is not among the verified ones (`nodeprune "
                f"models`); its modules follow the {candidate.family} pattern "
                f"({candidate.pattern(model)}), so the {candidate.family} adapter gates it"
            )
            return candidate
        tried.append((candidate, problems))
    raise NodepruneError(_unsupported(model, model_type, tried))


def _unsupported(
    model: nn.Module, model_type: object, tried: list[tuple[ArchitectureAdapter, list[str]]]
) -> str:
    """Name what is missing for the patterns that came closest: those whose modules all
    exist (only the logits differ), else those that found the most of their modules."""
    closest = [(a, p) for a, p in tried if p == [_LOGITS]]
    if not closest:
        depth = {a.family: _depth(model, a) for a, _ in tried}
        deepest = max(depth.values())
        closest = [(a, p) for a, p in tried if deepest and depth[a.family] == deepest]
    reasons: dict[str, list[str]] = {}
    for adapter, problems in closest:
        reasons.setdefault("; ".join(problems), []).append(adapter.family)
    if reasons:
        why = "; ".join(f"{' and '.join(f)} pattern: {r}" for r, f in reasons.items())
    else:
        paths = sorted({a.layers_path for a, _ in tried})
        why = f"its blocks are at none of the known paths ({', '.join(paths)})"
    return (
        f"architecture {model_type!r} is not supported: {why}. Verified model types: "
        f"{', '.join(supported_model_types())}; {_ADD_ONE}."
    )


def _depth(model: nn.Module, adapter: ArchitectureAdapter) -> int:
    """How many of a pattern's modules (blocks, attention output, MLP down projection,
    routed experts) the model's first block has."""
    try:
        layer = adapter.layers(model)[0]
    except (AttributeError, TypeError, IndexError):
        return 0
    found = 1
    for find in (adapter.attn_out_proj, adapter.mlp_down_proj, adapter.experts):
        try:
            found += find(layer) is not None  # None: the pattern has no such module
        except AttributeError:
            pass
    return found


_LOGITS = (
    "its logits are not the LM head of the final hidden state (a transform after the "
    "head, such as a scale, that no adapter applies)"
)


@torch.no_grad()
def _logits_problems(model: nn.Module, adapter: ArchitectureAdapter) -> list[str]:
    """Whether ``adapter``'s LM head on the body's last hidden state gives the model's
    own logits, on a four-token probe (one forward pass each way)."""
    weight = adapter.embedding(model).weight
    ids = ((torch.arange(4, device=weight.device) * 7 + 1) % weight.shape[0]).unsqueeze(0)
    training = model.training
    model.eval()
    try:
        try:
            full = model(input_ids=ids).logits[0].float()
        except Exception as exc:  # the model's own code: say so rather than guess
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise NodepruneError(
                f"the model's own forward pass failed on a 4-token probe ({first}); check "
                "its config"
            ) from exc
        try:
            hidden = adapter.base_model(model)(input_ids=ids).last_hidden_state[0]
            ours = adapter.lm_head(model)(hidden).float().to(full.device)
        except (AttributeError, TypeError, RuntimeError) as exc:
            return [f"its body or LM head cannot be called as {adapter.family}'s ({exc})"]
    finally:
        model.train(training)
    tolerance = 1e-4 * max(1.0, float(full.abs().max()))
    if ours.shape != full.shape or float((ours - full).abs().max()) > tolerance:
        return [_LOGITS]
    return []
