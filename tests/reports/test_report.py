"""The HTML report of a run folder: self-contained, every section that has data, and
readable figures for a 30-layer model."""

from __future__ import annotations

import base64
import json
import re
import shutil

import pytest
import torch
from run_fixtures import tiny_runs, write_edge_circuit

from nodeprune.architectures.base import ModelDims
from nodeprune.circuit import Circuit, full_masks, make_consistent
from nodeprune.cli import main
from nodeprune.errors import NodepruneError
from nodeprune.granularity import GRANULARITIES
from nodeprune.reports import build_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def runs(tmp_path_factory, tokenizer):
    return tiny_runs(tmp_path_factory.getbasetemp() / "tiny_runs", tokenizer)


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def _png_size(png: bytes) -> tuple[int, int]:
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_full_report_is_self_contained(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    path = build_report(run, [runs[1]])
    html = path.read_text()
    # Nothing is fetched: every src/href is a data URI or an in-page anchor.
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert not re.search(r"https?:|ftp:|//[a-z]|@import|url\(", text)
    for attr in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert attr.startswith(("data:image/png;base64,", "#")), attr
    images = _images(html)
    figures = sorted(p.name for p in (run / "figures").iterdir())
    assert figures == sorted(
        f"{n}.png" for n in ("kept_per_layer", "head_grid", "attention_neurons", "mlp_neurons",
                             "history", "faithfulness_curve", "stability")
    )  # fmt: skip
    assert len(images) == len(figures)
    for png in images:
        assert png.startswith(PNG_MAGIC) and len(png) > 5000
    for section in ("Overview", "Faithfulness curve", "Comparison with baselines",
                    "Stability across seeds", "Training", "Configuration"):  # fmt: skip
        assert f"<h2>{section}</h2>" in html
    assert "coarse" in html and "CPR" in html and "multi-granular" in html
    assert json.loads((run / "stability.json").read_text())["n_runs"] == 2
    assert "Training took" in html  # from the circuit's separate timings field


def test_missing_optional_files_give_notes(runs, tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    shutil.copy(runs[1] / "circuit.json", run / "circuit.json")
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert "No curves.json" in html and "No compare.json" in html
    assert "Stability across seeds" not in html
    assert not (run / "figures" / "faithfulness_curve.png").exists()


def test_malformed_compare_file_is_a_clear_error(runs, tmp_path):
    run = tmp_path / "bad"
    shutil.copytree(runs[0], run)
    (run / "compare.json").write_text(json.dumps({"method": "coarse"}))
    with pytest.raises(NodepruneError, match="compare.json: expected a list"):
        build_report(run)
    (run / "compare.json").write_text("[{")
    with pytest.raises(NodepruneError, match="not valid JSON"):
        build_report(run)
    with pytest.raises(NodepruneError, match="no circuit.json"):
        build_report(tmp_path)


def _smollm2_like_circuit() -> Circuit:
    """A circuit shaped like SmolLM2-135M (30 layers x 9 heads, 1536 MLP neurons)."""
    dims = ModelDims(n_layers=30, n_heads=9, head_dim=64, d_model=576, d_mlp=1536, n_kv_heads=3)
    gen = torch.Generator().manual_seed(0)
    masks = full_masks(dims)
    for g in ("attention_head", "attention_neuron", "mlp_neuron", "mlp_output"):
        masks[g] = torch.rand(masks[g].shape, generator=gen) < 0.4
    masks = make_consistent(masks, list(GRANULARITIES))
    scores = {"attention_head": (torch.randn(30, 9, generator=gen) * 3).tolist()}
    history = [
        {
            "step": s,
            "loss": 1 / s,
            "kl": 0.1 + 1 / s,
            "kept": {g: 1 - s / 400 for g in GRANULARITIES},
        }
        for s in range(1, 201, 2)
    ]
    return Circuit(
        "smollm2-135m", "ioi", "corrupted", 0, dims, masks, list(GRANULARITIES),
        config={"steps": 200, "lam_g": {"mlp_neuron": 2.0}}, metrics={"kl": 0.2, "n": 64},
        extra={"scores": scores, "history": history},
    )  # fmt: skip


def test_thirty_layer_figures_stay_readable(tmp_path):
    _smollm2_like_circuit().save(tmp_path / "circuit.json")
    build_report(tmp_path)
    for name in ("kept_per_layer", "head_grid", "mlp_neurons", "attention_neurons"):
        width, height = _png_size((tmp_path / "figures" / f"{name}.png").read_bytes())
        # Wide enough for 30 labelled columns (>= 40 px each), not wider than a page.
        assert 30 * 40 <= width <= 2000, (name, width)
        assert 200 <= height <= 1200, (name, height)


def test_a_run_with_an_edge_circuit_shows_it_as_a_graph(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    html = build_report(run).read_text()
    assert "<h2>Edge circuit</h2>" not in html and not (run / "figures/edge_graph.png").exists()
    write_edge_circuit(run)
    html = build_report(run).read_text()
    assert "<h2>Edge circuit</h2>" in html and "edges kept" in html
    png = (run / "figures" / "edge_graph.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 5000
    assert base64.b64encode(png).decode() in html
    # An edge circuit of another node circuit (the run was rediscovered) is not shown.
    circuit = Circuit.load(run / "circuit.json")
    head = circuit.masks["attention_head"]
    head.view(-1)[0] = ~head.view(-1)[0]
    circuit.save(run / "circuit.json")
    assert "<h2>Edge circuit</h2>" not in build_report(run).read_text()


def test_a_thirty_layer_edge_graph_stays_readable(tmp_path):
    _smollm2_like_circuit().save(tmp_path / "circuit.json")
    write_edge_circuit(tmp_path)
    build_report(tmp_path)
    width, height = _png_size((tmp_path / "figures" / "edge_graph.png").read_bytes())
    # A row per layer at >= 40 px, within a page's width.
    assert 800 <= width <= 2000, width
    assert 30 * 40 <= height <= 2200, height
