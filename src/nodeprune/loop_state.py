"""The state of a training loop as a checkpoint stores it: tensors (for safetensors) and
plain JSON values. Generic over torch objects (an optimizer, the RNGs); the loop says
what it consists of (Discovery.state / Discovery.restore) and checkpoint.py reads and
writes the files."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import Tensor


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{pid}.{key}"] = value
            else:
                plain.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "state": plain}


def load_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], saved: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, values in saved["state"].items():
        state.setdefault(int(pid), {}).update(values)
    groups = []
    for current, group in zip(optimizer.param_groups, saved["param_groups"], strict=True):
        # JSON turned tuples (AdamW's betas) into lists.
        groups.append(
            {k: tuple(v) if isinstance(current.get(k), tuple) else v for k, v in group.items()}
        )
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_state(
    generator: torch.Generator, device: torch.device
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The loop's generator and the global torch (and CUDA), Python and NumPy RNGs."""
    tensors = {"rng.generator": generator.get_state(), "rng.torch": torch.get_rng_state()}
    if device.type == "cuda":
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    plain = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, int(pos), int(has_gauss), float(cached)],
    }
    return tensors, plain


def load_rng(
    generator: torch.Generator,
    device: torch.device,
    tensors: dict[str, Tensor],
    saved: dict[str, Any],
) -> None:
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and device.type == "cuda":
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, pos, has_gauss, cached = saved["numpy"]
    keys = tensors["rng.numpy"].numpy().astype(np.uint32)
    np.random.set_state((kind, keys, pos, has_gauss, cached))
