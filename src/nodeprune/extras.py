"""Optional dependencies (the extras of pyproject.toml): a missing one is a one-line
NodepruneError that names the extra to install, never an ImportError traceback."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import NodepruneError

#: top-level module -> the extra that installs it (accelerate also comes with ``gguf``)
EXTRAS = {"matplotlib": "plots", "gguf": "gguf", "accelerate": "accelerate", "ray": "ray"}


def install_hint(module: str, extra: str | None = None) -> str:
    extra = extra or EXTRAS.get(module.split(".")[0])
    if extra is None:
        return f"pip install {module.split('.')[0]}"
    return f"pip install 'nodeprune[{extra}]'"


def missing_module(exc: ImportError) -> str | None:
    """The optional top-level module whose absence raised ``exc``, if it is one."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name in EXTRAS:
        return name
    text = str(exc)
    # transformers reports a missing backend in prose ("... requires the accelerate
    # library ..."), with no module name on the exception.
    return next((m for m in EXTRAS if m in text), None)


def require(module: str, what: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` or fail with ``<what> needs <module>, ...: pip install ...``
    (``extra``: the extra to name, where it is not the module's own)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        absent = isinstance(exc, ModuleNotFoundError) and exc.name == module
        state = "is not installed" if absent else f"cannot be imported ({exc})"
        hint = install_hint(module, extra)
        raise NodepruneError(f"{what} needs {module}, which {state}: {hint}") from exc
