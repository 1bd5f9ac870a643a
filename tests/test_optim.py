"""Granular Adam: Adam with one second moment per granularity (optim.py)."""

from __future__ import annotations

import json

import torch
from conftest import tiny_discovery_config

from nodeprune import Discovery
from nodeprune.optim import GranularAdam


def _grads(steps: int, n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g) * torch.linspace(0.01, 3, n) for _ in range(steps)]


def test_one_entry_per_group_is_exactly_adam():
    a = torch.nn.Parameter(torch.zeros(6))
    b = torch.nn.Parameter(torch.zeros(6))
    ours = GranularAdam([a], [slice(i, i + 1) for i in range(6)], lr=0.1)
    ref = torch.optim.Adam([b], lr=0.1)
    for grad in _grads(20, 6):
        a.grad, b.grad = grad.clone(), grad.clone()
        ours.step()
        ref.step()
    assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


def test_a_gate_pushed_only_by_a_tiny_gradient_moves_slowly_among_decisive_peers():
    # Entry 0 sees only a tiny constant gradient (the sparsity term of a gate whose
    # sample sat at 1); its peers see large ones. AdamW moves it at ~lr per step,
    # Granular Adam at a small fraction of that.
    def moved(optimizer_cls, **kw) -> float:
        p = torch.nn.Parameter(torch.zeros(4))
        opt = optimizer_cls([p], lr=0.5, **kw)
        g = torch.Generator().manual_seed(1)
        for _ in range(10):
            noise = torch.randn(3, generator=g) * 1e-2
            p.grad = torch.cat([torch.tensor([1.6e-4]), noise])
            opt.step()
        return float(-p.detach()[0])

    adamw = moved(torch.optim.AdamW, weight_decay=0.0)
    granular = moved(GranularAdam, groups=[slice(0, 4)])
    assert adamw > 4.0  # ~lr per step for 10 steps
    assert granular < 0.1 * adamw


def test_granular_adam_run_resumes_exactly(tokenizer, tmp_path):
    from conftest import tiny_model

    loaded = tiny_model("llama", tokenizer)

    def config():
        return tiny_discovery_config(
            steps=12, n_train=24, n_test=12, lr=0.1, lam=0.5, seed=3, optimizer="granular_adam"
        )

    ref = Discovery(loaded, config())
    ref_circuit = ref.run(progress=False)

    class Crash(Exception):
        pass

    def crash(d):
        if d.step == 8:
            raise Crash

    try:
        Discovery(loaded, config()).run(
            progress=False, checkpoint_dir=tmp_path, checkpoint_every=3, on_step=crash
        )
    except Crash:
        pass
    resumed = Discovery(loaded, config())
    resumed.load_checkpoint(tmp_path)
    assert resumed.step == 6
    circuit = resumed.run(progress=False)
    assert torch.equal(resumed.gates.log_alpha, ref.gates.log_alpha)
    assert json.dumps(circuit.comparable_json(), sort_keys=True) == json.dumps(
        ref_circuit.comparable_json(), sort_keys=True
    )


def test_no_step_is_longer_than_the_learning_rate():
    # One entry's gradient dwarfs its group's RMS: its step is still at most lr.
    p = torch.nn.Parameter(torch.zeros(1000))
    opt = GranularAdam([p], [slice(0, 1000)], lr=0.5)
    grad = torch.full((1000,), 1e-6)
    grad[0] = 1.0
    p.grad = grad
    opt.step()
    assert float(p.detach().abs().max()) <= 0.5 + 1e-6
    assert float(-p.detach()[0]) == 0.5
