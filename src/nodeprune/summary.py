"""Plain-text summary tables for the terminal."""

from __future__ import annotations

from .circuit import Circuit
from .granularity import GRANULARITIES

METRIC_LABELS = {
    "kl": "KL(full || circuit)",
    "logit_diff": "logit diff, circuit",
    "logit_diff_full": "logit diff, full model",
    "logit_diff_ablated": "logit diff, all ablated",
    "normalized_faithfulness": "normalized faithfulness",
    "normalized_faithfulness_low": "  95% bootstrap interval, low",
    "normalized_faithfulness_high": "  95% bootstrap interval, high",
    "accuracy": "accuracy",
    "exact_match": "top-1 match with full model",
    "n": "test prompts",
}


def granularity_table(circuit: Circuit) -> str:
    rows = [f"{'granularity':<18}{'kept':>9}{'total':>9}{'kept %':>9}"]
    for g, gran in GRANULARITIES.items():
        if not gran.available(circuit.dims):
            continue  # experts in a dense model, MLP neurons in a routed-only MoE
        if g not in circuit.enabled:
            rows.append(f"{g:<18}{'(off)':>9}{circuit.total(g):>9}{'':>9}")
            continue
        kept, total = circuit.kept(g), circuit.total(g)
        rows.append(f"{g:<18}{kept:>9}{total:>9}{100 * kept / total:>8.1f}%")
    return "\n".join(rows)


#: The granularities a mixture of experts reports layer by layer.
EXPERT_GRANULARITIES = ("expert", "expert_neuron")


def expert_table(circuit: Circuit) -> str:
    """Kept routed experts and expert neurons in each layer ("" for a dense model or
    a circuit that gated neither)."""
    shown = [g for g in EXPERT_GRANULARITIES if g in circuit.enabled and circuit.dims.n_experts]
    if not shown:
        return ""
    counts = circuit.granularities()
    per_layer_total = {g: circuit.total(g) // circuit.dims.n_layers for g in shown}
    rows = [f"{'layer':<8}" + "".join(f"{GRANULARITIES[g].label:>20}" for g in shown)]
    for layer in range(circuit.dims.n_layers):
        cells = [f"{counts[g]['per_layer'][layer]}/{per_layer_total[g]}" for g in shown]
        rows.append(f"{layer:<8}" + "".join(f"{c:>20}" for c in cells))
    return "\n".join(rows)


def task_metric_label(task_name: str) -> str:
    from .tasks import TASKS

    cls = TASKS.get(task_name)
    return cls.metric_label if cls is not None else "logit diff"


def metrics_table(metrics: dict[str, float], metric_label: str = "logit diff") -> str:
    """The metrics, with the task's own name for its metric (stored as logit_diff)."""
    rows = []
    undefined = metrics.get("faithfulness_defined", 1.0) == 0.0
    for key, label in METRIC_LABELS.items():
        label = label.replace("logit diff", metric_label)
        if key not in metrics or (undefined and key.startswith("normalized_faithfulness_")):
            continue
        value = metrics[key]
        text = f"{value:d}" if isinstance(value, int) else f"{value:.4f}"
        if undefined and key == "normalized_faithfulness":
            text = "undefined"
        rows.append(f"{label:<38}{text:>12}")
    if undefined:
        rows.append(UNDEFINED_FAITHFULNESS.replace("logit diff", metric_label))
    return "\n".join(rows)


#: Why a normalized faithfulness is not printed as a number.
UNDEFINED_FAITHFULNESS = (
    "(normalized faithfulness is undefined: the full and the fully-ablated model's logit "
    "diff do not differ reliably on these prompts, so the ratio means nothing; use a task "
    "the model solves, more test prompts (--n-test) or another ablation)"
)


#: What a degenerate circuit means, and what to change.
STATUS_WARNINGS = {
    "empty": "the circuit is empty (everything inside the layers was pruned): lower lam "
    "or the lam_g weights",
    "full": "nothing was pruned (the circuit is the whole model): raise lam, the lam_g "
    "weights, lr or steps",
}


def circuit_status(circuit: Circuit) -> str:
    """``empty``, ``full`` or ``ok``."""
    if circuit.is_empty():
        return "empty"
    if circuit.is_full():
        return "full"
    return "ok"


def status_warning(circuit: Circuit) -> str | None:
    return STATUS_WARNINGS.get(circuit_status(circuit))


def circuit_summary(circuit: Circuit) -> str:
    head = (
        f"circuit for task {circuit.task!r} on {circuit.model} "
        f"(ablation: {circuit.ablation}, seed {circuit.seed})"
    )
    warning = status_warning(circuit)
    warn = f"\nWARNING: {warning}." if warning else ""
    metrics = metrics_table(circuit.metrics, task_metric_label(circuit.task))
    target = target_line(circuit)
    experts = expert_table(circuit)
    experts = f"\n\nrouted experts kept, per layer:\n{experts}" if experts else ""
    took = timing_line(circuit.timings, circuit.extra.get("autocast"))
    return f"{head}\n\n{granularity_table(circuit)}{experts}\n\n{metrics}{target}{warn}{took}"


#: The phases of a run's wall time, as the circuit file's ``timings`` name them.
PHASES = (
    ("setup_seconds", "set-up"),
    ("train_seconds", "training"),
    ("selection_seconds", "selection"),
    ("test_seconds", "test"),
)


def timing_line(timings: dict[str, float], autocast: object = None) -> str:
    """Where a run's time went, when its file says (older files time the training only),
    and in which precision training and validation ran when it was mixed."""
    parts = [f"{label} {timings[key]:.0f} s" for key, label in PHASES if key in timings]
    if len(parts) < 2:
        return ""
    measured = timings.get("measure_seconds")
    if measured:
        parts[1] += f" (of it {measured:.0f} s validation measurements)"
    mixed = f"; training and validation in {autocast} autocast, test without it"
    return "\n\ntime: " + ", ".join(parts) + (mixed if autocast not in (None, "off") else "")


#: How far the test faithfulness may fall from a faithfulness target before the summary
#: says so (the validation prompts the target was met on are a different sample).
TARGET_TOLERANCE = 0.05


def target_line(circuit: Circuit) -> str:
    """What a target-mode run asked for, what validation gave and how the test compares."""
    target = circuit.extra.get("target")
    if not target:
        return ""
    from .target_spec import Target

    # The cut, not the threshold, pins the circuit: gates tied at the threshold's
    # log-alpha can fall on either side of it (targets.GateRanking).
    dropped = target.get("gates_dropped")
    cut = f"the {dropped} lowest-ranked gates dropped, " if dropped is not None else ""
    line = (
        f"\n\ntarget: {Target(target['kind'], target['value']).describe()}; met on "
        f"the validation prompts ({target['validation']:.4f}) with {cut}log-alpha threshold "
        f"{target['threshold']:.3f}"
    )
    if target["kind"] == "faithfulness":
        test = circuit.metrics.get("normalized_faithfulness", float("nan"))
        if not abs(test - target["value"]) <= TARGET_TOLERANCE:
            line += (
                f"\nWARNING: the test faithfulness {test:.4f} is more than "
                f"{TARGET_TOLERANCE} from the target: more validation prompts (--n-val) make "
                "the target hold better on held-out prompts"
            )
    return line
