"""``nodeprune report RUN_DIR``: figures in RUN_DIR/figures/ and one self-contained
RUN_DIR/report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..circuit import Circuit
from ..evaluation import METRIC_KEYS
from ..fsutil import atomic_write, check_file_target, check_writable, ensure_folder
from ..granularity import GRANULARITIES
from ..metrics.ground_truth import reference_circuits, score_gpt2_circuit
from ..run_files import FIGURES_DIR, REPORT_FILE, STABILITY_FILE
from ..stability import load_runs, save_stability, stability
from ..summary import METRIC_LABELS, UNDEFINED_FAITHFULNESS
from . import figures_circuit as fc
from . import figures_edges as fg
from . import figures_eval as fe
from .html import Section, cards, document, figure, fmt, key_value_table, note, table
from .plotting import Plot
from .rundata import COMPARE_FILE, CURVES_FILE, RunData, load_run


def build_report(run_dir: str | Path, other_runs: list[str | Path] | None = None) -> Path:
    """Write RUN_DIR/report.html and RUN_DIR/figures/*.png; with other runs (seeds), also
    RUN_DIR/stability.json. Returns the report's path."""
    run = load_run(run_dir)
    fig_dir, out = run.folder / FIGURES_DIR, run.folder / REPORT_FILE
    # Checked before any figure is drawn; and nothing is written through a link.
    check_writable(run.folder, "the run folder")
    ensure_folder(fig_dir, root=run.folder)
    check_file_target(out)
    if other_runs:
        circuits = [run.circuit, *load_runs(list(other_runs))]
        labels = [str(run.folder)] + [str(p) for p in other_runs]
        run.stability = stability(circuits, labels)
        save_stability(run.stability, run.folder / STABILITY_FILE)
    c = run.circuit
    gt_scores = score_gpt2_circuit(c)
    plots = _plots(run, gt_scores)
    for plot in plots.values():
        atomic_write(fig_dir / f"{plot.name}.png", plot.png, root=run.folder)
    sections = [
        Section("overview", "Overview", _overview(c)),
        Section("circuit", "Circuit", _circuit_figures(c, plots)),
    ]
    if run.edges is not None:
        sections.append(Section("edges", "Edge circuit", _edges(run, plots)))
    sections += [
        Section("curve", "Faithfulness curve", _curves(run, plots)),
        Section("compare", "Comparison with baselines", _compare(run)),
    ]
    if gt_scores:
        sections.append(
            Section("ground-truth", "Published circuits", _ground_truth(gt_scores, plots))
        )
    if run.stability:
        sections.append(
            Section("stability", "Stability across seeds", _stability(run.stability, plots))
        )
    sections += [
        Section("history", "Training", _history(c, plots)),
        Section("config", "Configuration", _config(c)),
    ]
    title = f"nodeprune circuit: {c.task} on {c.model}"
    subtitle = f"ablation {c.ablation} · seed {c.seed} · run folder {run.folder.name}"
    return atomic_write(out, document(title, subtitle, sections), root=run.folder)


def _task_reference(c: Circuit) -> set[tuple[int, int]] | None:
    refs = [r for r in reference_circuits().values() if r.task == c.task]
    return set(refs[0].heads) if refs else None


def _plots(run: RunData, gt_scores: dict[str, Any]) -> dict[str, Plot]:
    c = run.circuit
    reference = _task_reference(c) if gt_scores else None
    made = [
        fc.kept_fraction_per_layer(c),
        fc.head_grid(c, reference),
        fc.attention_neurons(c),
        fc.mlp_neurons(c),
        fc.training_history(c.extra.get("history", [])),
        fg.edge_graph(run.edges) if run.edges is not None else None,
        fe.faithfulness_curves(run.curves) if run.curves else None,
        fe.roc_figure(gt_scores) if gt_scores else None,
        fe.stability_figure(run.stability, c.dims.n_layers, c.dims.n_heads)
        if run.stability
        else None,
    ]
    return {p.name: p for p in made if p is not None}


def _pct(kept: int, total: int) -> str:
    return f"{kept:,} / {total:,} ({100 * kept / total:.1f}%)" if total else "–"


def _overview(c: Circuit) -> str:
    m = c.metrics
    items = [
        ("normalized faithfulness", fmt(m.get("normalized_faithfulness"), 3)),
        ("KL(full || circuit)", fmt(m.get("kl"), 3)),
        ("accuracy", fmt(m.get("accuracy"), 3)),
        ("heads kept", _pct(c.kept("attention_head"), c.total("attention_head"))),
        ("MLP neurons kept", _pct(c.kept("mlp_neuron"), c.total("mlp_neuron"))),
    ]
    parts = [cards(items)]
    if c.is_empty():
        parts.append(note("The circuit is empty (everything pruned): lower lam or lam_g.", True))
    elif c.is_full():
        parts.append(note("Nothing was pruned: raise lam, the lam_g weights, lr or steps.", True))
    if m.get("faithfulness_defined", 1.0) == 0.0:
        parts.append(note(UNDEFINED_FAITHFULNESS, True))
    metric_rows = [[METRIC_LABELS[k], m[k]] for k in METRIC_KEYS if k in m and k in METRIC_LABELS]
    gran_rows = [
        [
            g,
            "yes" if g in c.enabled else "no",
            c.kept(g),
            c.total(g),
            f"{100 * c.kept(g) / c.total(g):.1f}%",
        ]  # fmt: skip
        for g, gran in GRANULARITIES.items()
        if gran.available(c.dims)  # no expert rows for a dense model
    ]
    parts.append('<div class="grid2"><div><h3>Metrics (held-out test prompts)</h3>')
    parts.append(table(["metric", "value"], metric_rows))
    parts.append("</div><div><h3>Nodes kept</h3>")
    parts.append(table(["granularity", "gated", "kept", "total", "kept %"], gran_rows))
    parts.append("</div></div>")
    return "".join(parts)


def _circuit_figures(c: Circuit, plots: dict[str, Plot]) -> str:
    names = ("kept_per_layer", "head_grid", "attention_neurons", "mlp_neurons")
    return "".join(figure(plots[n]) for n in names if n in plots)


def _edges(run: RunData, plots: dict[str, Plot]) -> str:
    """The edge phase's circuit against the node circuit it refines (its implied edges:
    every candidate kept)."""
    edges, c = run.edges, run.circuit
    m, n = edges.metrics, c.metrics
    rows = [
        ["edges kept", edges.n_kept, edges.kept.numel()],
        *[
            [METRIC_LABELS[k], m.get(k), n.get(k)]
            for k in ("normalized_faithfulness", "kl", "accuracy")
            if k in METRIC_LABELS
        ],
    ]
    parts = [
        table(["", "edge circuit", "node circuit (all candidate edges)"], rows),
        note(f"From {run.edges_note}; metrics on the same held-out test prompts."),
    ]
    if "edge_graph" in plots:
        parts.append(figure(plots["edge_graph"]))
    return "".join(parts)


def _curves(run: RunData, plots: dict[str, Plot]) -> str:
    if "faithfulness_curve" not in plots:
        return note(
            f"No {CURVES_FILE} in this run folder: faithfulness curves come from a sweep "
            "over the sparsity weight (see nodeprune compare)."
        )
    assert run.curves is not None
    area = run.curves.get("area", {})
    rows = [[m, a["cpr"], a["cmd"]] for m, a in area.items()]
    body = figure(plots["faithfulness_curve"])
    if rows:
        body += table(["method", "CPR (higher better)", "CMD (lower better)"], rows)
    return body


def _compare(run: RunData) -> str:
    if not run.compare:
        return note(f"No {COMPARE_FILE} in this run folder: run nodeprune compare --out to add it.")
    c = run.circuit
    grans = [g for g in GRANULARITIES if any(g in r.get("kept", {}) for r in run.compare)]
    metrics = [k for k in METRIC_KEYS if any(k in r.get("metrics", {}) for r in run.compare)]
    skip = {"method", "kept", "metrics"}
    extras: list[str] = []
    for r in run.compare:
        for k, v in r.items():
            if k not in skip and k not in extras and isinstance(v, int | float | str):
                extras.append(k)
    headers = ["method"] + [f"{g} kept" for g in grans] + metrics + extras
    rows = []
    for r in run.compare:
        kept = r.get("kept", {})
        row: list[Any] = [r["method"]]
        for g in grans:
            row.append(_pct(int(kept[g]), c.total(g)) if g in kept else None)
        row += [r.get("metrics", {}).get(k) for k in metrics]
        row += [r.get(k) for k in extras]
        rows.append(row)
    return table(headers, rows) + note("Fractions are of the model's nodes at each granularity.")


def _ground_truth(scores: dict[str, dict[str, Any]], plots: dict[str, Plot]) -> str:
    rows = [
        [
            s["description"],
            s["n_reference"],
            s["n_kept"],
            s["precision"],
            s["recall"],
            s["f1"],
            s["roc_auc"],
            ", ".join(s["missed"]) or "none",
        ]  # fmt: skip
        for s in scores.values()
    ]
    headers = ["reference", "heads", "kept", "precision", "recall", "F1", "ROC AUC", "missed"]
    body = table(headers, rows)
    if "roc" in plots:
        body += figure(plots["roc"])
    return body


def _stability(result: dict[str, Any], plots: dict[str, Plot]) -> str:
    n = result["n_runs"]
    rows = [
        [
            g,
            "/".join(str(k) for k in e["kept_per_run"]),
            e["jaccard_mean"],
            e["jaccard_min"],
            f"{100 * e['kept_by_k_runs'][n]:.1f}%",
            f"{100 * e['kept_by_k_runs'][0]:.1f}%",
        ]
        for g, e in result["granularities"].items()
    ]
    headers = ["granularity", "kept per run", "Jaccard mean", "Jaccard min", "kept by all runs",
               "kept by none"]  # fmt: skip
    body = note(f"{n} runs: " + "; ".join(str(r) for r in result["runs"]))
    body += table(headers, rows)
    if "stability" in plots:
        body += figure(plots["stability"])
    return body


def _history(c: Circuit, plots: dict[str, Plot]) -> str:
    body = figure(plots["history"]) if "history" in plots else note("No training history stored.")
    data = c.extra.get("data", {})
    if data:
        rows = [[split, v.get("generated"), v.get("kept")] for split, v in data.items()]
        body += "<h3>Prompts (after keeping those the full model answers correctly)</h3>"
        body += table(["split", "generated", "kept"], rows)
    if "train_seconds" in c.timings:
        body += note(f"Training took {c.timings['train_seconds']} s.")
    return body


def _config(c: Circuit) -> str:
    pairs: list[tuple[str, Any]] = [("model", c.model), ("model revision", c.model_revision)]
    pairs += [("model dims", ", ".join(f"{k} {v}" for k, v in c.dims.to_dict().items()))]
    for key, value in c.config.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {fmt(v)}" for k, v in value.items())
        pairs.append((key, value))
    return key_value_table(pairs)
