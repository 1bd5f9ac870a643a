"""The methods ``nodeprune compare`` runs: the two discoveries, then every baseline of the
registry; and its default curve points. Torch-free, so the command's help and argument
errors answer at once (compare.py, which runs them, imports torch)."""

from __future__ import annotations

from .baselines.registry import BASELINES

#: name -> one line for the help and the docs.
METHODS = {
    "multi-granular": "Discovery with every configured granularity (the method)",
    "coarse": "Discovery with attention-head and MLP-block gates only",
    **{name: b.description for name, b in BASELINES.items()},
}
#: Points of the size knob (0 empty, 1 the multi-granular sizes, 2 full) at which the
#: attribution and random circuits are evaluated for their curves.
DEFAULT_CURVE_SCALES = [0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
