"""A sweep's settings: the grid from a sweep file and the flags given over it, and the
backend its [run] table asks for.

The sweep file holds ``discover`` keys for every trial at the top level (and a
``[lam_g]`` table), the axes in ``[sweep]`` (``[sweep.lam_g]`` for per-granularity
weights) and how to run in ``[run]``. Flags override the file, axis by axis
(``nodeprune sweep``'s parser is in nodeprune.cli.sweep).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from ..config import LAM_G_PREFIX, layered_settings, load_toml
from ..errors import NodepruneError
from ..large_models import load_options_from_args
from ..suggest import closest
from .backends import BACKENDS, LocalBackend, Resources
from .grid import PLAIN_AXES, SweepSpec

#: The argparse destinations of the axis flags: ``axis.<name>``.
AXIS_PREFIX = "axis."
#: Keys of a sweep file's [run] table, with their defaults.
RUN_DEFAULTS: dict[str, Any] = {
    "out": "runs/sweep",
    "backend": "ray",
    "ray_address": None,
    "ray_num_cpus": None,
    "trial_cpus": 1.0,
    "trial_gpus": None,  # 1 when the trials run on CUDA (device cuda* or a device map)
    "trial_memory_gb": None,
    "max_workers": None,
    "device_map": None,
    "gradient_checkpointing": False,
}
AXIS_TYPES: dict[str, type] = {"model": str, "task": str, "lam": float, "seed": int}
#: What each [run] value must be: (accepted types, how the error says it); numbers >= 0.
_NUMBER = (int, float)
RUN_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "out": ((str,), "a folder path (a string)"),
    "backend": ((str,), f"one of {', '.join(BACKENDS)}"),
    "ray_address": ((str,), "a Ray address (a string)"),
    "ray_num_cpus": ((int,), "a whole number of CPUs (>= 0)"),
    "trial_cpus": (_NUMBER, "a number of CPUs (>= 0)"),
    "trial_gpus": (_NUMBER, "a number of GPUs (>= 0)"),
    "trial_memory_gb": (_NUMBER, "a number of GB (>= 0)"),
    "max_workers": ((int,), "a whole number of workers (>= 0)"),
    "device_map": ((str, dict), "a device-map strategy (auto, ...) or a table"),
    "gradient_checkpointing": ((bool,), "true or false"),
}


def _table(value: Any, what: str, source: str, form: str) -> dict[str, Any]:
    """``value`` if it is a TOML table, else a one-line error saying the expected form."""
    if not isinstance(value, dict):
        raise NodepruneError(
            f"{source}: {what} must be a table ({form}), not a {type(value).__name__}"
        )
    return value


def _split_file(data: dict[str, Any], source: str) -> tuple[dict, dict, dict]:
    """(discover base, axes, run settings) from a sweep file."""
    base = {k: v for k, v in data.items() if k not in ("sweep", "run")}
    _table(base.get("lam_g", {}), "lam_g", source, "[lam_g] with granularity = weight")
    axes = dict(_table(data.get("sweep", {}), "sweep", source, "[sweep] with axis = [values]"))
    lam_g_axes = _table(
        axes.pop("lam_g", {}), "sweep.lam_g", source, "[sweep.lam_g] with granularity = [values]"
    )
    for g, values in lam_g_axes.items():
        axes[LAM_G_PREFIX + g] = values
    run = dict(_table(data.get("run", {}), "run", source, "[run] with key = value"))
    for key, value in run.items():
        if key not in RUN_DEFAULTS:
            raise NodepruneError(f"{source}: unknown [run] key {key!r}{closest(key, RUN_DEFAULTS)}")
        _check_run_value(key, value, source)
    return base, axes, run


def _check_run_value(key: str, value: Any, source: str) -> None:
    types, form = RUN_TYPES[key]
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if ok and key == "backend":
        ok = value in BACKENDS
    if ok and isinstance(value, int | float) and not isinstance(value, bool):
        ok = math.isfinite(value) and value >= 0
    if not ok:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise NodepruneError(f"{source}: [run] {key} must be {form}, got {shown}")


def spec_and_settings(args: argparse.Namespace) -> tuple[SweepSpec, dict[str, Any]]:
    """File first, then flags (the same precedence as ``discover``'s config_from_args)."""
    data = load_toml(args.config) if getattr(args, "config", None) else {}
    source = str(getattr(args, "config", "config"))
    base, axes, run = _split_file(data, source)
    flags = vars(args)
    for key, value in flags.items():
        if key.startswith(AXIS_PREFIX):
            axes[key[len(AXIS_PREFIX) :]] = value
    plain = {k: v for k, v in flags.items() if not k.startswith(AXIS_PREFIX)}
    base = layered_settings(base, plain, source)
    for name in PLAIN_AXES:  # a single value in the base is a one-point axis
        if name in axes:
            base.pop(name, None)
    settings = {**RUN_DEFAULTS, **run}
    for key in RUN_DEFAULTS:
        value = getattr(args, key, None)
        if value is not None and key not in ("device_map", "gradient_checkpointing"):
            if isinstance(value, int | float) and not (math.isfinite(value) and value >= 0):
                flag = "--" + key.replace("_", "-")
                raise NodepruneError(f"{flag} must be a finite number >= 0, got {value}")
            settings[key] = value
    settings["load"] = load_options_from_args(args, run)
    settings["device"] = base.get("device", "cpu")
    return SweepSpec(base=base, axes=axes), settings


def make_backend(settings: dict[str, Any]):
    options = settings["load"]
    if settings["backend"] == "local":
        return LocalBackend(options)
    if settings["backend"] != "ray":
        raise NodepruneError(f"backend must be one of {', '.join(BACKENDS)}")
    from .ray_backend import RayBackend, import_ray

    import_ray()  # fail now, with the install hint, not after the grid is written
    gpus = settings["trial_gpus"]
    if gpus is None:
        # Ray hides every GPU from an actor that asked for none.
        on_gpu = str(settings.get("device", "cpu")).startswith("cuda") or options.device_map
        gpus = 1.0 if on_gpu else 0.0
    resources = Resources(float(settings["trial_cpus"]), float(gpus), settings["trial_memory_gb"])
    return RayBackend(
        options,
        resources,
        address=settings["ray_address"],
        num_cpus=settings["ray_num_cpus"],
        max_workers=settings["max_workers"],
    )
