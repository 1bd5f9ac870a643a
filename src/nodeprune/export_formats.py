"""The export formats: each one's name and the options it takes. Torch-free, so
``nodeprune export --help`` and its argument errors answer at once; export.py holds the
writer of each (and imports torch)."""

from __future__ import annotations

from .errors import NodepruneError
from .suggest import closest

#: name -> the options (``nodeprune export`` flags) it reads; the others are ignored.
EXPORT_OPTIONS: dict[str, tuple[str, ...]] = {
    "eap-ig": ("parallel_attn_mlp", "neurons"),
    "tl-hooks": (),
    "mib": ("parallel_attn_mlp", "log_alphas", "mib_task", "mib_model"),
}


def check_format(fmt: str) -> None:
    if fmt not in EXPORT_OPTIONS:
        raise NodepruneError(
            f"unknown export format {fmt!r}{closest(fmt, EXPORT_OPTIONS)}; "
            f"choose from {', '.join(EXPORT_OPTIONS)}"
        )
