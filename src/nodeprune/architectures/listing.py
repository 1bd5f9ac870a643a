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
    "(with a one-line note); a mixture-of-experts MLP is not gated yet."
)


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
