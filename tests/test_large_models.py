"""Large-model options on tiny models: gradient checkpointing keeps the gate gradients
exact, bf16 weights keep fp32 gates, and device_map loading goes through accelerate."""

from __future__ import annotations

import copy

import pytest
import torch

from nodeprune.ablator import Ablator
from nodeprune.gates import GateSet
from nodeprune.intervention import GatedModel
from nodeprune.large_models import (
    attach_gated,
    enable_gradient_checkpointing,
    parse_device_map,
)
from nodeprune.models import load_model, wrap_model
from nodeprune.splits import build_task_data
from nodeprune.tasks import get_task


def _gate_grad(loaded, checkpointing: bool, calls: list[int], replay: bool = True) -> torch.Tensor:
    """Gradient of a gated forward's loss w.r.t. every gate log-alpha."""
    if checkpointing:
        enable_gradient_checkpointing(loaded.model)
    gated = GatedModel(loaded)
    if replay:
        attach_gated(loaded.model, gated)
    # The attention output projection holds the head/attention-neuron gates.
    first_layer = loaded.adapter.layers(loaded.model)[0]
    counter = loaded.adapter.attn_out_proj(first_layer).register_forward_hook(
        lambda *a: calls.append(1)
    )
    try:
        task = get_task("ioi")
        data = build_task_data(gated, task, {"train": 8, "test": 4}, 0, False, 8)
        batch = data.train
        ablated = Ablator("corrupted", gated).values(batch)
        gates = GateSet(loaded.dims, ["attention_head", "attention_neuron", "mlp_neuron"], seed=1)
        calls.clear()
        logits = gated.gated_logits(
            batch.clean_ids, batch.attention_mask, batch.answer_pos, gates.sample(
                torch.Generator().manual_seed(3)
            ), ablated
        )  # fmt: skip
        task.metric(logits, batch).sum().backward()
        return gates.log_alpha.grad.clone()
    finally:
        counter.remove()
        attach_gated(loaded.model, None)
        gated.remove()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_gradient_checkpointing_keeps_gate_gradients(family, tokenizer, request):
    from conftest import tiny_model

    plain = tiny_model(family, tokenizer)
    checkpointed = wrap_model(copy.deepcopy(plain.model), tokenizer, plain.name)
    calls_plain: list[int] = []
    calls_ckpt: list[int] = []
    grad_plain = _gate_grad(plain, False, calls_plain)
    grad_ckpt = _gate_grad(checkpointed, True, calls_ckpt)
    # The layer really was recomputed in the backward pass ...
    assert len(calls_plain) == 1 and len(calls_ckpt) == 2
    # ... with the gates applied, so every gate gets the same gradient.
    assert grad_plain.abs().sum() > 0
    torch.testing.assert_close(grad_ckpt, grad_plain, rtol=1e-5, atol=1e-7)


def test_checkpointing_without_the_gate_replay_breaks(tokenizer):
    """Why attach_gated exists: a recompute that runs ungated saves other tensors."""
    from conftest import tiny_model

    loaded = tiny_model("llama", tokenizer)
    with pytest.raises(torch.utils.checkpoint.CheckpointError):
        _gate_grad(loaded, True, [], replay=False)


def test_checkpointing_leaves_dropout_off(tokenizer):
    from conftest import tiny_model

    loaded = tiny_model("gpt2", tokenizer)  # GPT-2 has dropout 0.1 in its config
    layers = enable_gradient_checkpointing(loaded.model)
    assert layers and all(layer.training for layer in layers)
    dropouts = [m for m in loaded.model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and not any(m.training for m in dropouts)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        a = loaded.model(ids).logits
        b = loaded.model(ids).logits
    torch.testing.assert_close(a, b)


def test_bf16_weights_keep_fp32_gates(tokenizer):
    from conftest import tiny_model

    loaded = tiny_model("llama", tokenizer)
    loaded.model.to(torch.bfloat16)
    gated = GatedModel(loaded)
    task = get_task("ioi")
    data = build_task_data(gated, task, {"train": 4, "test": 4}, 0, False, 4)
    gates = GateSet(loaded.dims, ["attention_head", "mlp_neuron"])
    assert gates.log_alpha.dtype == torch.float32
    batch = data.train
    ablated = Ablator("corrupted", gated).values(batch)
    logits = gated.gated_logits(
        batch.clean_ids, batch.attention_mask, batch.answer_pos, gates.sample(), ablated
    )
    logits.logsumexp(-1).sum().backward()
    grad = gates.log_alpha.grad
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_device_map_loads_through_accelerate(llama_model, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    llama_model.model.save_pretrained(tmp_path)
    llama_model.tokenizer.save_pretrained(tmp_path)
    seen: list[object] = []
    original = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get("device_map"))
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    loaded = load_model(str(tmp_path), device_map="auto")  # CPU only here: all on cpu
    assert seen == ["auto"]
    assert loaded.device.type == "cpu"
    assert not any(p.requires_grad for p in loaded.model.parameters())
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(loaded.model(ids).logits, llama_model.model(ids).logits)


def test_parse_device_map():
    from nodeprune.errors import NodepruneError

    assert parse_device_map("auto") == "auto"
    assert parse_device_map('{"": 0}') == {"": 0}
    assert parse_device_map(None) is None
    with pytest.raises(NodepruneError, match="JSON"):
        parse_device_map("{not json")


def test_discovery_step_under_checkpointing_keeps_the_ablated_values(tokenizer):
    """A training step frees each corrupted activation once used, except under gradient
    checkpointing, whose recompute needs them again: the step must match a plain one."""
    from conftest import tiny_discovery_config, tiny_model

    from nodeprune.discovery import Discovery

    plain = tiny_model("llama", tokenizer)
    checkpointed = wrap_model(copy.deepcopy(plain.model), tokenizer, plain.name)
    enable_gradient_checkpointing(checkpointed.model)
    after = []
    for loaded in (plain, checkpointed):
        d = Discovery(loaded, tiny_discovery_config(steps=5))
        attach_gated(loaded.model, d.gated)
        try:
            assert d.gated.checkpointing() == (loaded is checkpointed)
            d.train_step()
        finally:
            attach_gated(loaded.model, None)
            d.gated.remove()
        after.append(d.gates.log_alpha.detach().clone())
    torch.testing.assert_close(after[1], after[0], rtol=1e-5, atol=1e-6)
