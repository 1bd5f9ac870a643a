"""Reading off a discovery run's result: the binarised circuit, scored on the held-out
test prompts, with what its file records of the run."""

from __future__ import annotations

import time
from typing import Any

import torch

from .checkpoint import TASK_CHECKSUM, task_file_sha256
from .circuit import Circuit
from .export_eap import BOS_KEY, prompts_start_with_bos
from .granularity import GRANULARITIES


def read_circuit(run: Any) -> Circuit:
    """A :class:`~nodeprune.discovery.Discovery` run's binarised circuit (its final
    masks), its test metrics and what the circuit file records of the run: data counts,
    BOS, coarse scores, the target, the history, the task file's checksum, the training
    time."""
    cfg = run.config
    c = Circuit(
        # The model actually used (a library caller's config may name another).
        model=run.loaded.name,
        task=run.task.name,
        ablation=cfg.ablation,
        seed=cfg.seed,
        dims=run.loaded.dims,
        masks=run.final_masks(),
        enabled=list(run.gates.enabled),
        config=cfg.to_dict(),
        model_revision=run.loaded.revision,
    )
    started = time.perf_counter()
    c.metrics = run.bench.evaluate(c.gate_values(run.gates.log_alpha))
    test_seconds = time.perf_counter() - started
    with torch.no_grad():
        # Continuous scores (final log-alpha) of the coarse nodes, for ROC curves
        # against reference circuits; neuron-level scores are too many to store.
        scores = {
            g: la.cpu().tolist()
            for g, la in run.gates.log_alphas().items()
            if GRANULARITIES[g].scored
        }
    first_tokens = torch.cat([run.data.train.clean_ids[:, 0], run.data.test.clean_ids[:, 0]])
    c.extra = {
        "data": run.data.counts,
        # The precision of the training and validation passes (``auto`` resolved here).
        "autocast": run.autocast,
        # EAP-IG and MIB prepend a BOS token; exports say whether these prompts had one.
        BOS_KEY: prompts_start_with_bos(first_tokens.tolist(), run.loaded.tokenizer),
        "scores": scores,
        **({"target": run.target_report()} if run.target is not None else {}),
        "history": [
            {"step": h.step, "loss": h.loss, "kl": h.kl, "kept": h.kept}
            for h in run.history[:: max(1, len(run.history) // 100)]
        ],
        **(
            {
                "target_history": [
                    {"step": h.step, "weight": h.target_weight, "validation": h.validation}
                    for h in run.history
                    if h.validation is not None
                ]
            }
            if run.target is not None
            else {}
        ),
    }
    sha = task_file_sha256(run.task)
    if sha is not None:
        # Every circuit of a task file (library and sweeps too, not only `discover`)
        # carries its content's checksum, so `evaluate` can refuse an edited file.
        c.extra[TASK_CHECKSUM] = sha
    # A resumed run's set-up and measurements are this process's; training is all steps'.
    phases = {**run.phase_seconds, "test_seconds": test_seconds}
    c.timings = {
        "train_seconds": round(run.train_seconds, 2),
        **{k: round(v, 2) for k, v in phases.items()},
    }
    return c
