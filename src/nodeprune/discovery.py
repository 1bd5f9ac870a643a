"""The discovery loop: train gate logits on a frozen model, then read off the circuit."""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
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
from .closing import ClosedOnExit
from .config import DiscoveryConfig, config_with
from .discovery_result import read_circuit
from .dtypes import AUTOCAST_DTYPES, resolve_autocast
from .errors import NodepruneError
from .evaluation import SplitReference
from .gate_init import gate_attribution, start_from_scores
from .gates import GateSet
from .granularity import GRANULARITIES, granularities_for_model
from .health import NumericalError, check_step
from .loop_state import BatchOrder, gate_update, loop_state, restore_loop_state
from .models import LoadedModel
from .objective import kl_full_to_circuit, sparsity_penalty, sparsity_weight, total_loss
from .optim import build_optimizer
from .splits import TaskData
from .targets import (
    Selection,
    SparsityController,
    measure,
    select_threshold,
    target_from_config,
    validation_reference,
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


class Discovery(ClosedOnExit):
    """One discovery run; its state (gates, optimizer, schedule, RNG) is all here.

    ``source``: a loaded model, for which the run builds its own workbench (the set-up:
    hooks, splits, fitted ablator; closed with :meth:`close` or on leaving a ``with``
    block), or a :class:`~nodeprune.workbench.Workbench` shared with other runs (its
    task, prompts and ablation; the caller closes it). ``task`` and ``data`` replace
    what an own workbench would build.
    """

    #: The step record gate_update writes (loop_state.py).
    LOG = StepLog

    def __init__(
        self,
        source: LoadedModel | Workbench,
        config: DiscoveryConfig,
        task: Task | None = None,
        data: TaskData | None = None,
    ) -> None:
        set_up_started = time.perf_counter()
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
        #: Where the wall time goes (the circuit file's ``timings``): the set-up (an own
        #: workbench's prompts, filter and references included), the controller's
        #: validation measurements (part of the training time), the final selection.
        self.phase_seconds = {
            "setup_seconds": time.perf_counter() - set_up_started,
            "measure_seconds": 0.0,
            "selection_seconds": 0.0,
        }

    def _set_up(self) -> None:
        config, loaded = self.config, self.loaded
        device = loaded.device
        #: What ``--autocast`` means on this machine (``auto`` resolved once; recorded
        #: in the circuit file, since the same config runs differently elsewhere).
        self.autocast = resolve_autocast(config.autocast, device.type, config.dtype)
        self.gates = GateSet(
            loaded.dims,
            config.granularities,
            config.init_log_alpha,
            config.init_spread,
            config.seed,
        ).to(device)
        if config.gate_init == "attribution":
            scores = gate_attribution(
                self.gated,
                self.ablator,
                self.task,
                self.data.train,
                list(self.gates.enabled),
                config.eval_batch_size,
            )
            start_from_scores(self.gates, scores, config.init_log_alpha, config.init_spread)
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
        self.batches = BatchOrder(len(self.data.train), config.batch_size, self.generator)
        self.history: list[StepLog] = []
        self.full_logprobs = self.bench.train_logprobs
        self.train_seconds = 0.0
        self.target = target_from_config(config)
        self.controller: SparsityController | None = None
        #: The validation prompts the final selection measures on, and the controller's
        #: first of them.
        self.selection_probe: SplitReference | None = None
        self.probe: SplitReference | None = None
        self.selection: Selection | None = None
        if self.target is not None:
            self.controller = SparsityController(
                self.target, config.target_rate, config.target_every
            )
            if self.target.kind != "size":
                self.selection_probe = self._validation_probe()
                self.probe = self.selection_probe.first_prompts(config.n_val_controller)
            if (
                self.target.kind == "faithfulness"
                and not self.selection_probe.faithfulness_defined()
            ):
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

    def _validation_probe(self) -> SplitReference:
        assert self.target is not None
        if self.data.validation is None:
            raise NodepruneError(
                f"target_{self.target.kind} is measured on validation prompts; set --n-val above 0"
            )
        return validation_reference(self.bench, list(self.gates.enabled))

    def train_step(self) -> StepLog:
        cfg = self.config
        idx = self.batches.next()
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
        terms = (loss, kl, sparsity, lam_now, weight)
        return gate_update(self, self.gates.log_alpha, cfg.dtype, "gate", terms)

    def _measure_target(self) -> float:
        """The target's quantity for the binarised circuit at the current gates."""
        assert self.target is not None
        started = time.perf_counter()
        with self._autocast():  # the controller measures in the training precision
            value = measure(self.target, self.masks_at(0.0), self.probe)
        self.phase_seconds["measure_seconds"] += time.perf_counter() - started
        return value

    def _autocast(self) -> AbstractContextManager[object]:
        dtype = AUTOCAST_DTYPES[self.autocast]
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
        tensors, meta = loop_state(self)
        tensors["gates.log_alpha"] = self.gates.log_alpha.detach()
        meta.update(
            {
                "format_version": CHECKPOINT_FORMAT,
                "nodeprune_version": __version__,
                "config": self.config.to_dict(),
                "model": self.model_identity(),
                TASK_CHECKSUM: task_file_sha256(self.task),
            }
        )
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
            restore_loop_state(self, tensors, meta, StepLog)
            with torch.no_grad():
                self.gates.log_alpha.copy_(log_alpha.to(self.gates.log_alpha.device))
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
            self.controller = self.controller.replayed(self.history)

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
        with torch.no_grad():
            kept = {g: (la > threshold).cpu() for g, la in self.gates.log_alphas().items()}
        return self.masks_of(kept)

    def masks_of(self, kept: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The open gates ``kept`` (per enabled granularity), made hierarchically consistent."""
        masks = full_masks(self.loaded.dims)
        masks.update(kept)
        return make_consistent(masks, self.gates.enabled)

    def final_masks(self) -> dict[str, torch.Tensor]:
        """Deterministic gate > 0.5 (log-alpha > 0), made hierarchically consistent; in
        target mode, at the cut of the gates' ranking that meets the target on validation
        (log-alpha ties broken by their estimated harm on the validation prompts)."""
        if self.target is None:
            return self.masks_at(0.0)
        if self.selection is None:
            started = time.perf_counter()
            tiebreak = None
            probe = self.selection_probe
            if probe is not None:
                kind, few = self.target.kind, self.probe
                assert few is not None

                def tiebreak() -> dict[str, torch.Tensor]:
                    # On the controller's prompts: an order among tied gates, for the
                    # cost of a third of a pass over every validation prompt.
                    return few.pruning_harm(self.masks_at(0.0), kind)

            # Validation passes in the training precision; the test scores stay in --dtype.
            with self._autocast():
                self.selection = select_threshold(
                    self.target,
                    self.gates.log_alphas(),
                    self.masks_of,
                    probe,
                    tiebreak=tiebreak,
                    early_after=self.config.n_val_controller,
                )
            self.phase_seconds["selection_seconds"] = time.perf_counter() - started
        return self.masks_of(self.selection.kept)

    def circuit(self) -> Circuit:
        """The binarised circuit, scored on the test prompts (discovery_result.py)."""
        return read_circuit(self)

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
