"""Run folders for the report tests (imported by them; a second conftest.py would shadow
tests/conftest.py): real discovery on a tiny model trained in-process on IOI, plus
compare.json / curves.json in the agreed formats."""

from __future__ import annotations

import json
from pathlib import Path

from reports.tiny_ioi import one_thread, trained_ioi_gpt2

from nodeprune import Circuit, Discovery, DiscoveryConfig


def _discover(loaded, seed: int) -> Circuit:
    cfg = DiscoveryConfig(
        model="tiny-ioi-gpt2", steps=80, n_train=64, n_val=0, n_test=32, batch_size=32,
        lr=0.1, lam=0.9, init_spread=0.0, eval_batch_size=32, seed=seed,
    )  # fmt: skip
    with one_thread():
        return Discovery(loaded, cfg).run(progress=False)


def write_baselines(folder: Path, circuit) -> None:
    """compare.json and curves.json as nodeprune compare writes them (formats agreed in
    issue 4); numbers are made up, the report only has to show them."""
    kept = {g: circuit.kept(g) for g in ("attention_head", "mlp_block", "mlp_neuron")}
    rows = [
        {"method": "multi-granular", "kept": kept, "metrics": circuit.metrics, "wall_s": 3.5},
        {"method": "coarse", "kept": {"attention_head": 6, "mlp_block": 2},
         "metrics": {"kl": 0.4, "normalized_faithfulness": 0.8, "accuracy": 0.7}, "wall_s": 2.0},
        {"method": "random", "kept": kept, "metrics": {"kl": 2.1, "normalized_faithfulness": 0.1}},
    ]  # fmt: skip
    (folder / "compare.json").write_text(json.dumps(rows))
    curve = [
        {"fraction_kept": f, "normalized_faithfulness": min(1.0, 0.2 + f), "kl": 1 - f}
        for f in (0.01, 0.05, 0.1, 0.3, 0.6, 1.0)
    ]
    flat = [dict(p, normalized_faithfulness=p["fraction_kept"]) for p in curve]
    curves = {
        "methods": {"multi-granular": curve, "random": flat},
        "area": {"multi-granular": {"cpr": 0.9, "cmd": 0.1}, "random": {"cpr": 0.5, "cmd": 0.5}},
    }
    (folder / "curves.json").write_text(json.dumps(curves))


_CACHE: dict[str, list[Path]] = {}


def tiny_runs(root: Path, tokenizer) -> list[Path]:
    """Two run folders (seeds 0 and 1) of a real discovery on a tiny GPT-2 trained on
    IOI; the first also has compare.json and curves.json. Built once per session."""
    if "runs" not in _CACHE:
        loaded = trained_ioi_gpt2(tokenizer)
        folders = []
        for seed in (0, 1):
            folder = root / f"seed{seed}"
            _discover(loaded, seed).save(folder / "circuit.json")
            folders.append(folder)
        write_baselines(folders[0], Circuit.load(folders[0] / "circuit.json"))
        _CACHE["runs"] = folders
    return _CACHE["runs"]


def write_edge_circuit(folder: Path) -> None:
    """RUN/edges/edge_circuit.json as ``nodeprune edges`` writes it, for the run's own
    circuit: every candidate edge with a log-alpha spread over [-6, 6] (about half kept);
    the metrics are made up, the report only has to show them."""
    import torch

    from nodeprune.edges.circuit import EdgeCircuit
    from nodeprune.run_files import EDGE_CIRCUIT_FILE, EDGES_DIR

    circuit = Circuit.load(folder / "circuit.json")
    implied = EdgeCircuit.implied(circuit)
    n = implied.kept.numel()
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    log_alpha = torch.linspace(-6.0, 6.0, n)[order]
    metrics = {"normalized_faithfulness": 0.81, "kl": 0.42, "accuracy": 0.9}
    EdgeCircuit(circuit, log_alpha > 0, log_alpha, metrics=metrics).save(
        folder / EDGES_DIR / EDGE_CIRCUIT_FILE
    )
