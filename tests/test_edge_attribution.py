"""Edge attribution on tiny models: each EAP-IG edge's score is the derivative of the mean
task metric in its edge gate (checked against a finite difference), and it breaks the
ties that MIB's export otherwise leaves to EAP-IG's edge order."""

from __future__ import annotations

import pytest
import torch
from conftest import MODEL_CLASSES, tiny_config, tiny_discovery_config

from nodeprune.edges.attribution import edge_attribution, full_edge_model, mean_metric
from nodeprune.export_eap import eap_edges
from nodeprune.models import wrap_model
from nodeprune.workbench import Workbench

#: EAP-IG edges of each kind the derivative is checked on (tiny models: 2 layers, 4
#: heads; Llama's 2 key/value heads make a1.h3's key and value inputs key/value head 1's).
CHECKED = (
    "input->a0.h1<q>",
    "input->a0.h2<k>",
    "input->a0.h3<v>",
    "a0.h0->a1.h2<q>",
    "a0.h1->a1.h3<k>",
    "a0.h2->a1.h0<v>",
    "m0->a1.h1<v>",
    "input->m0",
    "a0.h3->m0",
    "a1.h2->m1",
    "m0->logits",
    "a1.h1->logits",
    "input->logits",
)


def _bench(family: str, tokenizer) -> Workbench:
    """A tiny model in float64 (so a finite difference is exact to many digits)."""
    torch.manual_seed(0)
    config = tiny_config(family)
    config.initializer_range = 0.3  # random weights large enough for a visible metric
    model = MODEL_CLASSES[family](config).double()
    loaded = wrap_model(model, tokenizer, f"tiny-{family}")
    cfg = tiny_discovery_config(n_train=12, n_test=4)
    return Workbench.for_config(loaded, cfg)


def _graph_index(edges, name: str) -> int:
    """The flat index of an EAP-IG edge in the edge graph, by the graph's own names."""
    parent, child = name.split("->")
    if "<k>" in child or "<v>" in child:
        dims = edges.graph.dims
        layer, rest = child[1:].split(".h")
        head, part = rest.split("<")
        child = f"a{layer}.g{int(head) // (dims.n_heads // dims.n_kv_heads)}<{part}"
    return edges.graph.edge_names().index((parent, child))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_an_edges_attribution_is_the_derivative_of_the_metric_in_its_gate(family, tokenizer):
    with _bench(family, tokenizer) as bench:
        attribution = edge_attribution(bench, prompts=10)
        assert attribution.prompts == 10
        dims = bench.dims
        assert list(attribution.scores) == [
            f"{p}->{c}{s}" for p, c, s in eap_edges(dims.n_layers, dims.n_heads, False)
        ]
        data = bench.data.train.select(slice(0, 10))
        eps = 1e-2
        with torch.no_grad(), full_edge_model(bench) as edges:
            ones = torch.ones(edges.graph.n_edges, dtype=torch.float64)
            for name in CHECKED:
                i = _graph_index(edges, name)
                up, down = ones.clone(), ones.clone()
                up[i] += eps
                down[i] -= eps
                change = mean_metric(bench, edges, data, up) - mean_metric(bench, edges, data, down)
                finite = float(change) / (2 * eps)
                got = attribution.scores[name]
                # The logits come out in float32 (intervention.py), so eps is not tiny and
                # the central difference agrees to its truncation error, O(eps**2).
                assert abs(got - finite) <= 2e-4 + 2e-3 * abs(finite), (name, got, finite)
        checked = [abs(attribution.scores[n]) for n in CHECKED]
        assert min(checked[:-1]) > 1e-4  # the comparisons above are not 0 against 0
        # At the answer position the clean and corrupted tokens are the same and the
        # logits read only that position, so the embedding's edges into what reads only
        # the answer position (the last layer's queries and MLP, the logits) do nothing.
        zero = {n for n, v in attribution.scores.items() if v == 0.0}
        last = dims.n_layers - 1
        assert zero == {f"input->a{last}.h{h}<q>" for h in range(dims.n_heads)} | {
            f"input->m{last}", "input->logits"
        }  # fmt: skip
        # Every other edge of the model has a score of its own (no ties left to break);
        # under grouped-query attention the EAP-IG edges into one key/value head's query
        # heads are one edge of the model, with one score.
        with full_edge_model(bench) as edges:
            distinct = edges.graph.n_edges
        assert len(set(attribution.scores.values())) == distinct - len(zero) + 1
        if family == "llama":
            scores = attribution.scores
            assert scores["a0.h1->a1.h2<k>"] == scores["a0.h1->a1.h3<k>"]
            assert scores["a0.h1->a1.h2<k>"] != scores["a0.h1->a1.h2<v>"]
            assert distinct < len(scores)
