"""What the node loop (discovery.py) and the edge loop (edges/training.py) share: the
batch order, the checked gate update with the target controller's measurement, and the
state a checkpoint stores (tensors for safetensors and plain JSON values; the loop says
what else it consists of, and checkpoint.py reads and writes the files)."""

from __future__ import annotations

import random
from dataclasses import asdict
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from .hard_concrete import LOG_ALPHA_LIMIT
from .health import check_step


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


class BatchOrder:
    """Which training prompts each step reads: the training set in a fresh random order
    each epoch (drawn from the loop's generator), and a cursor into that order. Both
    loops (node and edge) read their batches through one, and checkpoint it as
    ``data.order`` and ``cursor``."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator) -> None:
        self.n, self.size, self.generator = n, min(batch_size, n), generator
        self.order = torch.empty(0, dtype=torch.long)
        self.cursor = 0

    def next(self) -> Tensor:
        if self.cursor + self.size > len(self.order):
            self.order = torch.randperm(self.n, generator=self.generator)
            self.cursor = 0
        idx = self.order[self.cursor : self.cursor + self.size]
        self.cursor += self.size
        return idx

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return {"data.order": self.order}, {"cursor": self.cursor}

    def checked(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> tuple[Tensor, int]:
        """The saved order and cursor, or ValueError when they do not fit this set."""
        order, cursor = tensors["data.order"], meta["cursor"]
        if order.dtype != torch.long or order.dim() != 1 or len(order) not in (0, self.n):
            raise ValueError("the data order does not fit the training set")
        if len(order) and not torch.equal(order.sort().values, torch.arange(self.n)):
            raise ValueError("the data order is not a permutation of the training set")
        if not (isinstance(cursor, int) and 0 <= cursor <= len(order)):
            raise ValueError(f"cursor {cursor!r} is out of range")
        return order.clone(), cursor


class TrainingLoop(Protocol):
    """What :func:`loop_state` reads from a loop (the node loop and the edge loop)."""

    step: int
    batches: BatchOrder
    optimizer: torch.optim.Optimizer
    scheduler: Any
    history: list[Any]
    train_seconds: float
    config: Any  # .steps, .lr, .grad_clip
    bench: Any  # .device
    controller: Any  # a targets.SparsityController, or None

    #: The loop's step record: (step, loss, kl, sparsity, lam, kept, target_weight=,
    #: validation=).
    LOG: type

    def _measure_target(self) -> float: ...

    def kept_fractions(self) -> Any: ...


def gate_update(
    loop: TrainingLoop,
    log_alpha: torch.nn.Parameter,
    dtype: str,
    what: str,
    terms: tuple[Tensor, Tensor, Tensor, float, float],
) -> Any:
    """One optimizer step on the gate logits ``log_alpha`` (``what`` names them in
    errors) for ``terms`` = (loss, KL, sparsity, lam now, controller weight), checked
    before anything reaches the gates so that a NaN never does; then the step counter
    moves on and, in target mode, the controller may measure the circuit and move the
    sparsity weight. Returns the step's record (``loop.LOG``), appended to its history."""
    loss, kl, sparsity, lam_now, weight = terms
    cfg, number = loop.config, loop.step + 1
    check_step(number, dtype, cfg.lr, "loss", loss)
    loop.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_([log_alpha], cfg.grad_clip)
    check_step(number, dtype, cfg.lr, "gradient", norm, f"norm of the {what} gradients")
    loop.optimizer.step()
    loop.scheduler.step()
    with torch.no_grad():
        log_alpha.clamp_(-LOG_ALPHA_LIMIT, LOG_ALPHA_LIMIT)
    check_step(number, dtype, cfg.lr, "gates", log_alpha, f"{what} log-alphas")
    loop.step += 1
    validation = None
    if loop.controller is not None:
        validation = loop.controller.after_step(loop.step, cfg.steps, loop._measure_target)
    log = loop.LOG(
        loop.step,
        loss.item(),
        kl.item(),
        sparsity.item(),
        lam_now,
        loop.kept_fractions(),
        target_weight=weight,
        validation=validation,
    )
    loop.history.append(log)
    return log


def loop_state(loop: TrainingLoop) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """What every training loop's checkpoint holds besides its gates and identity."""
    opt_tensors, opt_plain = optimizer_state(loop.optimizer)
    rng_tensors, rng_plain = rng_state(loop.batches.generator, loop.bench.device)
    order_tensors, order_plain = loop.batches.state()
    tensors = {**order_tensors, **opt_tensors, **rng_tensors}
    meta = {
        "step": loop.step,
        **order_plain,
        "optimizer": opt_plain,
        "scheduler": loop.scheduler.state_dict(),
        "rng": rng_plain,
        "history": [asdict(h) for h in loop.history],
        "train_seconds": loop.train_seconds,
    }
    return tensors, meta


def restore_loop_state(
    loop: TrainingLoop, tensors: dict[str, Tensor], meta: dict[str, Any], history_type: type
) -> None:
    """Put back what :func:`loop_state` wrote. Everything is checked before anything is
    loaded (ValueError and friends: the caller reports a damaged checkpoint)."""
    step = meta["step"]
    if not (isinstance(step, int) and 0 <= step <= loop.config.steps):
        raise ValueError(f"step {step!r} is out of range")
    order, cursor = loop.batches.checked(tensors, meta)
    history = [history_type(**h) for h in meta["history"]]
    train_seconds = float(meta["train_seconds"])
    load_optimizer(loop.optimizer, tensors, meta["optimizer"])
    loop.scheduler.load_state_dict(meta["scheduler"])
    load_rng(loop.batches.generator, loop.bench.device, tensors, meta["rng"])
    loop.batches.order, loop.batches.cursor = order, cursor
    loop.step, loop.history, loop.train_seconds = step, history, train_seconds
