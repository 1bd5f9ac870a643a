"""The hard-concrete distribution's constants (Louizos et al. 2018, as in the paper):
temperature beta, stretch interval (gamma, zeta), and the range log-alpha is kept in.
Torch-free, so validating a config (the command line's argument checks) imports no torch."""

from __future__ import annotations

BETA = 2.0 / 3.0
GAMMA = -0.1
ZETA = 1.1
#: log-alpha is clamped to this range after every step: beyond it a gate is
#: saturated anyway, and unbounded values overflow the sigmoid in fp16/bf16.
LOG_ALPHA_LIMIT = 10.0
