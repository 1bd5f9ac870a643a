"""Tiny randomly initialised models of each supported family, built in-process."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from nodeprune.config import DiscoveryConfig
from nodeprune.models import LoadedModel, wrap_model
from nodeprune.tasks.ioi import NAMES, OBJECTS, PLACES, TEMPLATES_ABBA

VOCAB = 512


def _corpus() -> list[str]:
    rng = random.Random(0)
    lines = []
    for _ in range(400):
        a, b = rng.sample(NAMES, 2)
        t = rng.choice(TEMPLATES_ABBA)
        lines.append(t.format(A=a, B=b, PLACE=rng.choice(PLACES), OBJECT=rng.choice(OBJECTS)))
    # Every name alone with its leading space, so each becomes one token.
    lines += [" " + " ".join(NAMES)] * 20
    # A few words of the other tasks (pronouns, verb and noun forms, argument names),
    # so that each generator finds the single tokens it needs.
    lines += [" he she is are key keys door doors book books"] * 40
    lines += [" path size mode name value data items count index text"] * 40
    lines += ['def f(self, a):\n    """\n\n    :param a:\n    :param'] * 40
    return lines


def build_tokenizer(vocab_size: int = VOCAB) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained in-process on task-like text."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.pad_token = fast.eos_token
    return fast


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()


def tiny_config(family: str):
    common = dict(vocab_size=VOCAB)
    if family == "gpt2":
        return GPT2Config(n_layer=2, n_head=4, n_embd=32, n_positions=64, **common)
    if family == "gpt_neox":
        return GPTNeoXConfig(
            num_hidden_layers=2,
            num_attention_heads=4,
            hidden_size=32,
            intermediate_size=64,
            max_position_embeddings=64,
            rotary_pct=0.5,
            **common,
        )
    if family == "llama":
        return LlamaConfig(
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            hidden_size=32,
            intermediate_size=48,
            max_position_embeddings=64,
            **common,
        )
    raise ValueError(family)


MODEL_CLASSES = {"gpt2": GPT2LMHeadModel, "gpt_neox": GPTNeoXForCausalLM, "llama": LlamaForCausalLM}
FAMILIES = tuple(MODEL_CLASSES)


def tiny_model(family: str, tokenizer, seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    model = MODEL_CLASSES[family](tiny_config(family))
    return wrap_model(model, tokenizer, f"tiny-{family}")


@pytest.fixture(params=FAMILIES)
def family_model(request, tokenizer) -> LoadedModel:
    return tiny_model(request.param, tokenizer)


@pytest.fixture
def llama_model(tokenizer) -> LoadedModel:
    return tiny_model("llama", tokenizer)


def tiny_discovery_config(**overrides) -> DiscoveryConfig:
    """A discovery config sized for the tiny models: seconds, not minutes."""
    base = dict(model="tiny", n_val=0, n_test=24, filter=False, batch_size=8, eval_batch_size=16)
    return DiscoveryConfig(**{**base, **overrides})


def save_tiny_model(folder: Path, tokenizer, family: str = "llama") -> Path:
    """A tiny model and its tokenizer on disk, loadable by path like any HF model."""
    loaded = tiny_model(family, tokenizer)
    loaded.model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tokenizer) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), tokenizer)


# The real offline models (built in: nodeprune.builtin_models), loaded once per session
# by the slow tests that ask for them.
@pytest.fixture(scope="session")
def smollm2() -> LoadedModel:
    from nodeprune import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def gemma() -> LoadedModel:
    from nodeprune import load_model

    return load_model("gemma3-270m")
