"""Large models: loading options (device map, gradient checkpointing), next to models.py.

The flags are nodeprune.cli.flags.add_large_model_flags; a sweep file's [run] table
gives the same options (load_options_from_args).

Gradient checkpointing recomputes each decoder layer's forward during the backward
pass. nodeprune's gates are forward hooks inside the layer whose state (mode, masks,
ablated values) only exists while ``GatedModel.gated_logits`` runs, so the recompute
would run ungated and save different tensors. ``checkpoint_context`` takes
``GatedModel.snapshot()`` when a layer runs forward and ``restore``s it for the recompute
(``torch.utils.checkpoint``'s ``context_fn``, non-reentrant only).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import NodepruneError

if TYPE_CHECKING:  # `nodeprune --help` reads LoadOptions' module: no torch import here
    from torch import nn

    from .models import LoadedModel

#: The attribute through which a checkpointed model finds its active GatedModel.
GATED_ATTR = "_nodeprune_gated"


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model beyond name/dtype/device: shared by every trial of a sweep."""

    device_map: str | dict[str, Any] | None = None
    gradient_checkpointing: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_map": self.device_map,
            "gradient_checkpointing": self.gradient_checkpointing,
        }


#: The placement strategies of accelerate that a device map may name.
DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
_DEVICE_MAP_FORMS = f"{', '.join(DEVICE_MAP_STRATEGIES)}, or a JSON object {{module: device}}"


def parse_device_map(text: str | None) -> str | dict[str, Any] | None:
    """``auto``/``balanced``/``sequential``/... or a JSON object {module: device}."""
    if text is None or text == "":
        return None
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise NodepruneError(f"--device-map is not valid JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise NodepruneError("--device-map JSON must be an object {module: device}")
        return check_device_map(value)
    return check_device_map(text)


def check_device_map(value: Any, what: str = "--device-map") -> str | dict[str, Any] | None:
    """A device map accelerate accepts, checked here: accelerate's own errors for a bad
    one are multi-line ValueErrors from deep inside loading."""
    if value is None or isinstance(value, str) and value.strip() in DEVICE_MAP_STRATEGIES:
        return value.strip() if isinstance(value, str) else value
    if isinstance(value, str):
        if _is_device(value):
            return value
        raise NodepruneError(
            f"{what} {_short(value)} is neither a placement strategy nor a device name; "
            f"give {_DEVICE_MAP_FORMS}"
        )
    if not isinstance(value, dict) or not value:
        raise NodepruneError(f"{what} must be {_DEVICE_MAP_FORMS}, got {_short(value)}")
    for module, device in value.items():
        # Whether GPU `device` exists is checked where the model loads (models.py): a
        # sweep's driver may have no GPU while its Ray workers do.
        if isinstance(device, int) and not isinstance(device, bool) and device >= 0:
            continue
        if not (isinstance(device, str) and (device == "disk" or _is_device(device))):
            raise NodepruneError(
                f"{what}: module {_short(module)} is mapped to {_short(device)}, which is not "
                "a device (a GPU index such as 0, or cpu, cuda:1, disk)"
            )
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_device(name: str) -> bool:
    from .config import check_device

    try:
        check_device(name)
    except NodepruneError:
        return False
    return True


def checkpoint_context(model: nn.Module):
    """A ``context_fn`` for ``torch.utils.checkpoint``: replays the gate state on recompute."""

    def context_fn() -> tuple[AbstractContextManager[None], AbstractContextManager[None]]:
        gated = getattr(model, GATED_ATTR, None)
        if gated is None:
            return nullcontext(), nullcontext()
        state = gated.snapshot()

        @contextmanager
        def replay() -> Iterator[None]:
            current = gated.snapshot()
            gated.restore(state)
            try:
                yield
            finally:
                gated.restore(current)

        return nullcontext(), replay()

    return context_fn


def enable_gradient_checkpointing(model: nn.Module) -> list[nn.Module]:
    """Checkpoint every decoder layer (non-reentrant) of a frozen, eval-mode model.

    Hugging Face only checkpoints a layer whose ``training`` flag is set; setting it on
    the layer module alone (not its children) leaves dropout off. Returns the layers.
    """
    kwargs = {"use_reentrant": False, "context_fn": checkpoint_context(model)}
    # nodeprune never generates; a KV cache would be appended to again by the recompute
    # (GPT-2 passes it positionally, out of reach of Hugging Face's own guard).
    if getattr(model, "config", None) is not None:
        model.config.use_cache = False
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    elif getattr(model, "supports_gradient_checkpointing", False):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        raise NodepruneError(
            f"{type(model).__name__} does not support gradient checkpointing; "
            "drop --gradient-checkpointing"
        )
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    for layer in layers:
        layer.training = True
    return layers


def attach_gated(model: nn.Module, gated: object | None) -> None:
    """Tell the checkpoint hooks which GatedModel's state to replay (None: detach)."""
    if gated is None:
        if hasattr(model, GATED_ATTR):
            delattr(model, GATED_ATTR)
        return
    object.__setattr__(model, GATED_ATTR, gated)


def load_with_options(name: str, dtype: str, device: str, options: LoadOptions) -> LoadedModel:
    """``load_model`` plus the large-model options (device map, checkpointing)."""
    from .models import load_model

    loaded = load_model(name, dtype=dtype, device=device, device_map=options.device_map)
    if options.gradient_checkpointing:
        enable_gradient_checkpointing(loaded.model)
    return loaded


def load_options_from_args(
    args: argparse.Namespace, file: dict[str, Any] | None = None
) -> LoadOptions:
    """Flags over the values of a settings table (a sweep file's [run])."""
    file = file or {}
    device_map = args.device_map if args.device_map is not None else file.get("device_map")
    checkpointing = args.gradient_checkpointing
    if checkpointing is None:
        checkpointing = file.get("gradient_checkpointing", False)
    if isinstance(device_map, str):
        parsed = parse_device_map(device_map)
    else:  # a sweep file's [run] device_map table
        parsed = check_device_map(device_map, "[run] device_map")
    if not isinstance(checkpointing, bool):
        raise NodepruneError(
            f"[run] gradient_checkpointing must be true or false, got {checkpointing!r}"
        )
    return LoadOptions(parsed, checkpointing)
