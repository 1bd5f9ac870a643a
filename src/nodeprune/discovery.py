"""The discovery loop: train gate logits on a frozen model, then read off the circuit."""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .checkpoint import (
    CHECKPOINT_FORMAT,
    DAMAGED_ERRORS,
    TASK_CHECKSUM,
    RunInterrupted,
    StopOnSignal,
    check_compatible,
    checkpoint_note,
    damaged,
    read_checkpoint,
    read_meta,
    save_state,
    task_file_sha256,
)
from .circuit import Circuit, full_masks, make_consistent
from .config import AUTOCAST_DTYPES, DiscoveryConfig, config_with
from .errors import NodepruneError
from .evaluation import evaluate_gates
from .export_eap import BOS_KEY, prompts_start_with_bos
from .gates import GateSet
from .granularity import GRANULARITIES, granularities_for_model
from .health import NumericalError, check_step
from .loop_state import load_optimizer, load_rng, optimizer_state, rng_state
from .models import LoadedModel
from .objective import kl_full_to_circuit, sparsity_penalty, sparsity_weight, total_loss
from .optim import build_optimizer
from .splits import TaskData
from .targets import (
    Selection,
    SparsityController,
    ValidationProbe,
    is_measurement_step,
    measure,
    select_threshold,
    target_from_config,
)
from .tasks import Task
from .version import __version__
from .workbench import Workbench


@dataclass
class StepLog:
    step: int
    loss: float
    kl: float
    sparsity: float
    lam: float
    kept: dict[str, float] = field(default_factory=dict)
    #: Target mode: the controller's sparsity weight, and its validation measurement
    #: of the binarised circuit when one was taken at this step.
    target_weight: float = 1.0
    validation: float | None = None


class Discovery:
    """One discovery run; its state (gates, optimizer, schedule, RNG) is all here.

    ``source``: a loaded model, for which the run builds its own workbench (the set-up:
    hooks, splits, fitted ablator; closed with :meth:`close` or on leaving a ``with``
    block), or a :class:`~nodeprune.workbench.Workbench` shared with other runs (its
    task, prompts and ablation; the caller closes it). ``task`` and ``data`` replace
    what an own workbench would build.
    """

    def __init__(
        self,
        source: LoadedModel | Workbench,
        config: DiscoveryConfig,
        task: Task | None = None,
        data: TaskData | None = None,
    ) -> None:
        config = config.validate()
        fitted = granularities_for_model(config.granularities, source.dims)
        if fitted != config.granularities:  # the default set or all, on this model
            config = dataclasses.replace(config, granularities=fitted)
        self.config = config
        torch.manual_seed(config.seed)
        if isinstance(source, Workbench):
            if task is not None or data is not None:
                raise NodepruneError("a shared workbench brings its own task and prompts")
            source.check_matches(self.config)
            self.bench, self._owns_bench = source, False
        else:
            self.bench = Workbench.for_config(
                source, self.config, task, granularities=self.config.granularities, data=data
            )
            self._owns_bench = True
        self.loaded = self.bench.loaded
        self.task = self.bench.task
        self.gated = self.bench.gated
        self.data = self.bench.data
        self.ablator = self.bench.ablator_for(self.config.granularities)
        try:
            self._set_up()
        except BaseException:
            self.close()  # as for a failed data set-up (Workbench)
            raise

    def _set_up(self) -> None:
        config, loaded = self.config, self.loaded
        device = loaded.device
        self.gates = GateSet(
            loaded.dims,
            config.granularities,
            config.init_log_alpha,
            config.init_spread,
            config.seed,
        ).to(device)
        self.optimizer = build_optimizer(
            config.optimizer,
            self.gates.log_alpha,
            list(self.gates.slices.values()),
            config.lr,
            config.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps)),
        )
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.order = torch.empty(0, dtype=torch.long)
        self.cursor = 0
        self.history: list[StepLog] = []
        self.full_logprobs = self.bench.train_logprobs
        self.train_seconds = 0.0
        self.target = target_from_config(config)
        self.controller: SparsityController | None = None
        self.probe: ValidationProbe | None = None
        self.selection: Selection | None = None
        if self.target is not None:
            self.controller = SparsityController(self.target, config.target_rate)
            if self.target.kind != "size":
                self.probe = self._validation_probe()
            if self.target.kind == "faithfulness" and not self.probe.faithfulness_defined():
                # Refused before training, not after: no circuit can be steered onto it.
                raise NodepruneError(
                    "normalized faithfulness is undefined on these validation prompts (the "
                    "full and the fully ablated model score about the same), so it cannot "
                    "be a target; ask for --target-kl or --lam instead"
                )

    def close(self) -> None:
        """Take an own workbench's hooks off the model (a shared one is its owner's)."""
        if self._owns_bench:
            self.bench.close()

    def __enter__(self) -> Discovery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _validation_probe(self) -> ValidationProbe:
        assert self.target is not None
        if self.data.validation is None:
            raise NodepruneError(
                f"target_{self.target.kind} is measured on validation prompts; set --n-val above 0"
            )
        return ValidationProbe(
            self.gated,
            self.ablator,
            self.task,
            self.data.validation,
            self.gates.enabled,
            self.config.eval_batch_size,
        )

    def _next_indices(self) -> torch.Tensor:
        n = len(self.data.train)
        size = min(self.config.batch_size, n)
        if self.cursor + size > len(self.order):
            self.order = torch.randperm(n, generator=self.generator)
            self.cursor = 0
        idx = self.order[self.cursor : self.cursor + size]
        self.cursor += size
        return idx

    def train_step(self) -> StepLog:
        cfg = self.config
        idx = self._next_indices()
        batch = self.data.train.select(idx).to(self.loaded.device)
        gates = self.gates.sample(self.generator)
        with self._autocast():
            # The train prompts' corrupted activations, recorded once (ablator.py).
            self.ablator.record(self.data.train, cfg.eval_batch_size)
            ablated = self.ablator.values(batch, idx)
            # Each corrupted activation is freed once its site has run: they never all
            # coexist with the saved activations of the gated pass.
            logits = self.gated.gated_logits(
                batch.clean_ids,
                batch.attention_mask,
                batch.answer_pos,
                gates,
                ablated,
                release_ablated=True,
            )
        kl = kl_full_to_circuit(self.full_logprobs[idx.to(logits.device)], logits).mean()
        faithfulness = kl
        if cfg.margin_weight > 0:
            # The margin pushes the circuit's task metric up, not only towards the full model.
            faithfulness = faithfulness - cfg.margin_weight * self.task.metric(logits, batch).mean()
        sparsity = sparsity_penalty(self.gates.expected_l0(), self.gates.sizes(), cfg.lam_g)
        lam_now = sparsity_weight(self.step, cfg.steps, cfg.lam, cfg.sparsity_warmup)
        weight = self.controller.weight if self.controller is not None else 1.0
        loss = total_loss(faithfulness, sparsity, cfg.lam, lam_now * weight)
        # Checked before the optimizer applies anything, so a NaN never reaches the gates.
        number = self.step + 1
        check_step(number, cfg.dtype, cfg.lr, "kl", kl, "KL to the full model")
        check_step(number, cfg.dtype, cfg.lr, "sparsity", sparsity, "expected L0 penalty")
        check_step(number, cfg.dtype, cfg.lr, "loss", loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.gates.parameters(), cfg.grad_clip)
        check_step(number, cfg.dtype, cfg.lr, "gradient", norm, "norm of the gate gradients")
        self.optimizer.step()
        self.scheduler.step()
        self.gates.clamp_()
        check_step(number, cfg.dtype, cfg.lr, "gates", self.gates.log_alpha, "gate log-alphas")
        self.step += 1
        log = StepLog(
            self.step,
            loss.item(),
            kl.item(),
            sparsity.item(),
            lam_now,
            self.kept_fractions(),
            target_weight=weight,
            validation=self._steer(),
        )
        self.history.append(log)
        return log

    def _steer(self) -> float | None:
        """Target mode: every ``target_every`` steps (warm-up included), measure the
        binarised circuit and move the sparsity weight (targets.py)."""
        cfg = self.config
        if self.controller is None or self.target is None:
            return None
        if not is_measurement_step(self.step, cfg.steps, cfg.target_every):
            return None
        measured = measure(self.target, self.masks_at(0.0), self.probe)
        self.controller.update(measured)
        return measured

    def _autocast(self) -> AbstractContextManager[object]:
        dtype = AUTOCAST_DTYPES[self.config.autocast]
        if dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.loaded.device.type, dtype=dtype)

    @torch.no_grad()
    def kept_fractions(self) -> dict[str, float]:
        return {g: float((la > 0).float().mean()) for g, la in self.gates.log_alphas().items()}

    def run(
        self,
        progress: bool = True,
        on_step: Callable[[Discovery], None] | None = None,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 0,
    ) -> Circuit:
        """Train up to ``config.steps`` (from the current step, so a restored run
        continues) and return the circuit. With ``checkpoint_dir``, a checkpoint is
        written every ``checkpoint_every`` steps (0: none in between), after the last
        step, and on SIGINT/SIGTERM, which stop the run after the current step by
        raising :class:`~nodeprune.checkpoint.RunInterrupted`."""
        if checkpoint_every < 0:
            raise NodepruneError(f"checkpoint_every must be >= 0, got {checkpoint_every}")
        bar = tqdm(
            total=self.config.steps,
            initial=self.step,
            desc="discover",
            disable=not progress,
            dynamic_ncols=True,
        )
        saved_step = self.step
        with StopOnSignal(enabled=checkpoint_dir is not None) as stop:
            while self.step < self.config.steps:
                started = time.perf_counter()
                try:
                    log = self.train_step()
                except NumericalError as exc:
                    bar.close()
                    note = checkpoint_note(checkpoint_dir)
                    raise NumericalError(f"{exc}; {note}", exc.step, exc.quantity) from None
                self.train_seconds += time.perf_counter() - started
                bar.update(1)
                bar.set_postfix_str(
                    f"loss {log.loss:.3f} kl {log.kl:.3f} "
                    + " ".join(f"{GRANULARITIES[g].short} {v:.2f}" for g, v in log.kept.items())
                )
                if on_step is not None:
                    on_step(self)
                due = checkpoint_every > 0 and self.step % checkpoint_every == 0
                last = self.step == self.config.steps
                if checkpoint_dir is not None and (due or last or stop.received is not None):
                    self.save_checkpoint(checkpoint_dir)
                    saved_step = self.step
                if stop.received is not None:
                    bar.close()
                    raise RunInterrupted(
                        f"interrupted by {signal.Signals(stop.received).name} after step "
                        f"{self.step} of {self.config.steps}; checkpoint written to "
                        f"{checkpoint_dir} (step {saved_step})",
                        stop.received,
                        self.step,
                    )
        bar.close()
        return self.circuit()

    # -- checkpoints: the loop says what its state is; checkpoint.py does the files ------
    def model_identity(self) -> dict[str, Any]:
        return {"name": self.loaded.name, "dims": self.loaded.dims.to_dict()}

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The whole run state: tensors, and plain JSON values."""
        opt_tensors, opt_plain = optimizer_state(self.optimizer)
        rng_tensors, rng_plain = rng_state(self.generator, self.loaded.device)
        tensors = {
            "gates.log_alpha": self.gates.log_alpha.detach(),
            "data.order": self.order,
            **opt_tensors,
            **rng_tensors,
        }
        meta = {
            "format_version": CHECKPOINT_FORMAT,
            "nodeprune_version": __version__,
            "step": self.step,
            "cursor": self.cursor,
            "config": self.config.to_dict(),
            "model": self.model_identity(),
            "optimizer": opt_plain,
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_plain,
            "history": [asdict(h) for h in self.history],
            "train_seconds": self.train_seconds,
            TASK_CHECKSUM: task_file_sha256(self.task),
        }
        return tensors, meta

    def restore(self, tensors: dict[str, Tensor], meta: dict[str, Any], folder: Path) -> None:
        """Put back a state written by :meth:`state` (checked against this run first)."""
        try:
            check_compatible(self.config.to_dict(), self.model_identity(), self.task, meta, folder)
            log_alpha = tensors["gates.log_alpha"]
            if log_alpha.shape != self.gates.log_alpha.shape:
                raise ValueError(f"gate logits have shape {tuple(log_alpha.shape)}")
            if not torch.isfinite(log_alpha).all():
                raise ValueError("gate logits are not finite")
            order = tensors["data.order"]
            n = len(self.data.train)
            if order.dtype != torch.long or order.dim() != 1 or len(order) not in (0, n):
                raise ValueError("the data order does not fit the training set")
            if len(order) and not torch.equal(order.sort().values, torch.arange(n)):
                raise ValueError("the data order is not a permutation of the training set")
            step, cursor = meta["step"], meta["cursor"]
            if not (isinstance(step, int) and 0 <= step <= self.config.steps):
                raise ValueError(f"step {step!r} is out of range")
            if not (isinstance(cursor, int) and 0 <= cursor <= len(order)):
                raise ValueError(f"cursor {cursor!r} is out of range")
            history = [StepLog(**h) for h in meta["history"]]
            with torch.no_grad():
                self.gates.log_alpha.copy_(log_alpha.to(self.gates.log_alpha.device))
            load_optimizer(self.optimizer, tensors, meta["optimizer"])
            self.scheduler.load_state_dict(meta["scheduler"])
            load_rng(self.generator, self.loaded.device, tensors, meta["rng"])
            self.order = order.clone()
            self.cursor = cursor
            self.step = step
            self.history = history
            self.train_seconds = float(meta["train_seconds"])
        except DAMAGED_ERRORS as exc:
            raise damaged(folder, f"{type(exc).__name__}: {exc}") from exc

    def save_checkpoint(self, folder: str | Path) -> Path:
        """Write the whole run state to ``folder``/checkpoint.{safetensors,json}."""
        tensors, meta = self.state()
        return save_state(folder, tensors, meta, self.step)

    def load_checkpoint(self, folder: str | Path) -> None:
        """Continue from a checkpoint; config and model must be the checkpoint's."""
        folder = Path(folder)
        self.restore(*read_checkpoint(folder), folder)
        if self.controller is not None:
            # The controller's state is a function of its measurements, which the
            # history holds exactly: replaying them restores it bit for bit.
            self.controller = SparsityController(self.controller.target, self.config.target_rate)
            for log in self.history:
                if log.validation is not None:
                    self.controller.update(log.validation)

    @classmethod
    def from_checkpoint(cls, loaded: LoadedModel, folder: str | Path) -> Discovery:
        """Rebuild a run from a checkpoint alone, with the config stored in it."""
        meta = read_meta(folder)
        config = DiscoveryConfig.from_saved(meta.get("config") or {}, source=f"{folder} config")
        discovery = cls(loaded, config)
        discovery.load_checkpoint(folder)
        return discovery

    def masks_at(self, threshold: float) -> dict[str, torch.Tensor]:
        """Gates with log-alpha above ``threshold``, made hierarchically consistent."""
        masks = full_masks(self.loaded.dims)
        with torch.no_grad():
            for g, la in self.gates.log_alphas().items():
                masks[g] = (la > threshold).cpu()
        return make_consistent(masks, self.gates.enabled)

    def final_masks(self) -> dict[str, torch.Tensor]:
        """Deterministic gate > 0.5 (log-alpha > 0), made hierarchically consistent; in
        target mode, at the threshold that meets the target on validation."""
        if self.target is None:
            return self.masks_at(0.0)
        if self.selection is None:
            self.selection = select_threshold(
                self.target, self.gates.log_alphas(), self.masks_at, self.probe
            )
        return self.masks_at(self.selection.threshold)

    def circuit(self) -> Circuit:
        cfg = self.config
        c = Circuit(
            # The model actually used (a library caller's config may name another).
            model=self.loaded.name,
            task=self.task.name,
            ablation=cfg.ablation,
            seed=cfg.seed,
            dims=self.loaded.dims,
            masks=self.final_masks(),
            enabled=list(self.gates.enabled),
            config=cfg.to_dict(),
            model_revision=self.loaded.revision,
        )
        c.metrics = evaluate_gates(
            self.gated,
            self.ablator,
            self.task,
            self.data.test,
            c.gate_values(self.gates.log_alpha),
            cfg.eval_batch_size,
        )
        with torch.no_grad():
            # Continuous scores (final log-alpha) of the coarse nodes, for ROC curves
            # against reference circuits; neuron-level scores are too many to store.
            scores = {
                g: la.cpu().tolist()
                for g, la in self.gates.log_alphas().items()
                if GRANULARITIES[g].scored
            }
        first_tokens = torch.cat([self.data.train.clean_ids[:, 0], self.data.test.clean_ids[:, 0]])
        c.extra = {
            "data": self.data.counts,
            # EAP-IG and MIB prepend a BOS token; exports say whether these prompts had one.
            BOS_KEY: prompts_start_with_bos(first_tokens.tolist(), self.loaded.tokenizer),
            "scores": scores,
            **({"target": self.target_report()} if self.target is not None else {}),
            "history": [
                {"step": h.step, "loss": h.loss, "kl": h.kl, "kept": h.kept}
                for h in self.history[:: max(1, len(self.history) // 100)]
            ],
            **(
                {
                    "target_history": [
                        {"step": h.step, "weight": h.target_weight, "validation": h.validation}
                        for h in self.history
                        if h.validation is not None
                    ]
                }
                if self.target is not None
                else {}
            ),
        }
        sha = task_file_sha256(self.task)
        if sha is not None:
            # Every circuit of a task file (library and sweeps too, not only `discover`)
            # carries its content's checksum, so `evaluate` can refuse an edited file.
            c.extra[TASK_CHECKSUM] = sha
        c.timings = {"train_seconds": round(self.train_seconds, 2)}
        return c

    def target_report(self) -> dict[str, object]:
        """What was asked, the threshold chosen and what it gave on validation."""
        assert self.target is not None and self.controller is not None
        assert self.selection is not None
        return {
            "kind": self.target.kind,
            "value": self.target.value,
            "final_sparsity_weight": self.controller.weight,
            **self.selection.to_json(),
        }


def discover(
    loaded: LoadedModel, config: DiscoveryConfig | None = None, progress: bool = True, **overrides
) -> Circuit:
    """Find a circuit: ``nodeprune.discover(nodeprune.load_model(), task="ioi")``.

    ``overrides`` are config fields (a misspelt one is an error); ``config`` itself is
    left as it was. The model's hooks are taken off again when the run is done."""
    cfg = config_with(config or DiscoveryConfig(model=loaded.name), overrides)
    with Discovery(loaded, cfg) as discovery:
        return discovery.run(progress=progress)
