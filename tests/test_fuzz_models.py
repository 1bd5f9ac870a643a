"""Model loading under damaged input: whatever the files of a model folder or a .gguf
file hold (cut short, bytes flipped, emptied, deleted), ``load_model`` loads the model or
fails with a one-line NodepruneError, never another exception.

The seeds are a tiny Llama saved with ``save_pretrained`` and the same model written as
a GGUF file by the gguf package's own writer. ``NODEPRUNE_FUZZ_N`` scales the inputs per
loop (a fifth of it each, at least 12: each input is a model load); run with ``-s`` to
see the counts.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import MODEL_CLASSES, tiny_config
from test_fuzz import FUZZ_N, fuzz_loop, mutate, outcome

from nodeprune.errors import NodepruneError
from nodeprune.models import load_model

N = max(12, FUZZ_N // 5)

#: Hugging Face Llama parameter names -> GGUF tensor names (llama.cpp's convention).
_GGUF_TOP = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_GGUF_LAYER = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}  # fmt: skip


def write_tiny_gguf(path: Path, tokenizer) -> Path:
    """The tiny Llama of conftest (random weights, fp32) and its byte-level BPE tokenizer
    as a GGUF file that transformers loads."""
    gguf = pytest.importorskip("gguf")
    cfg = tiny_config("llama")
    torch.manual_seed(0)
    model = MODEL_CLASSES["llama"](cfg)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(cfg.vocab_size)
    bpe = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    tokens = sorted(bpe["vocab"], key=bpe["vocab"].get)
    eos = bpe["vocab"][tokenizer.eos_token]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if i == eos else 1 for i in range(len(tokens))])  # 3: control
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in bpe["merges"]])
    writer.add_bos_token_id(eos)
    writer.add_eos_token_id(eos)
    for name, tensor in model.state_dict().items():
        if name in _GGUF_TOP:
            gguf_name = _GGUF_TOP[name]
        else:  # model.layers.{i}.{module}.weight
            parts = name.split(".")
            gguf_name = f"blk.{parts[2]}.{_GGUF_LAYER['.'.join(parts[3:-1])]}.weight"
        writer.add_tensor(gguf_name, tensor.float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, tokenizer) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", tokenizer)


@pytest.fixture
def quiet_transformers():
    """Hundreds of loads: no progress bars or warnings from each (restored after)."""
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    yield
    logging.set_verbosity(verbosity)
    logging.enable_progress_bar()


def damage(data: bytes, rng: random.Random, header: int) -> bytes:
    """Cut short, bytes flipped or zeroed (mostly in the first ``header`` bytes, where
    the metadata is), emptied, or a random blob with the right magic bytes."""
    op = rng.randrange(6)
    if op == 0:
        return data[: rng.randrange(len(data))]
    if op == 1:
        return b""
    if op == 2:
        return data[:4] + rng.randbytes(rng.randint(0, 400))
    b = bytearray(data)
    span = header if rng.random() < 0.8 else len(b)
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(min(span, len(b)))
        if op == 3:
            b[pos] ^= 1 << rng.randrange(8)
        elif op == 4:
            end = min(len(b), pos + rng.randint(1, 16))
            b[pos:end] = bytes(end - pos)
        else:
            b[pos] = rng.randrange(256)
    return bytes(b)


def _header_size(path: Path) -> int:
    """Where the GGUF's tensor data starts (the metadata and tensor infos end there)."""
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(str(path))
    return min(int(t.data_offset) for t in reader.tensors)


def test_the_tiny_gguf_loads(tiny_gguf, quiet_transformers):
    loaded = load_model(str(tiny_gguf))
    assert loaded.dims.n_layers == 2 and loaded.dims.n_kv_heads == 2


def test_gguf_file_fuzz(tiny_gguf, tmp_path, quiet_transformers):
    valid = tiny_gguf.read_bytes()
    header = _header_size(tiny_gguf)
    rng = random.Random(3)
    inputs = [damage(valid, rng, header) for _ in range(N)]
    folder = tmp_path / "cases"
    folder.mkdir()

    def load(path: Path) -> None:
        gguf_path = path.with_suffix(".gguf")
        path.rename(gguf_path)
        load_model(str(gguf_path))

    counts = fuzz_loop(inputs, folder, load)
    print(f"gguf fuzz: {sum(counts.values())} inputs, {dict(counts)}")
    assert sum(counts.values()) == N and counts["error"] > 0


#: The files of a saved tiny Llama, and what a fuzz input does to one of them.
FOLDER_OPS = ("truncate", "flip", "empty", "delete", "mutate-json")


def _damaged_folder(seed_dir: Path, out: Path, rng: random.Random) -> str:
    shutil.copytree(seed_dir, out)
    files = sorted(p for p in out.iterdir() if p.is_file())
    target = rng.choice(files)
    op = rng.choice(FOLDER_OPS if target.suffix == ".json" else FOLDER_OPS[:4])
    data = target.read_bytes()
    if op == "truncate":
        target.write_bytes(data[: rng.randrange(len(data))])
    elif op == "flip":
        # safetensors: the JSON header (its first few hundred bytes) is what parses
        span = min(len(data), 2048)
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(span)] = rng.randrange(256)
        target.write_bytes(bytes(b))
    elif op == "empty":
        target.write_bytes(b"")
    elif op == "delete":
        target.unlink()
    else:
        target.write_bytes(mutate(data, rng))
    return f"{op} {target.name}"


def test_model_folder_fuzz(tiny_llama_dir, tmp_path, quiet_transformers):
    rng = random.Random(4)
    counts: Counter = Counter()
    crashes: dict[str, str] = {}
    for i in range(N):
        folder = tmp_path / f"case{i}"
        what = _damaged_folder(tiny_llama_dir, folder, rng)
        try:
            counts[outcome(lambda f=folder: load_model(str(f)))] += 1
        except Exception as exc:  # noqa: BLE001 -- any other exception is the finding
            counts["crash"] += 1
            crashes.setdefault(f"{type(exc).__name__}: {str(exc)[:80]}", what)
        shutil.rmtree(folder)
    print(f"model-folder fuzz: {sum(counts.values())} inputs, {dict(counts)}")
    assert not crashes, f"{counts['crash']} crashes: {crashes}"
    assert counts["error"] > 0


def test_damaged_safetensors_is_one_line(tiny_llama_dir, tmp_path, quiet_transformers):
    folder = tmp_path / "m"
    shutil.copytree(tiny_llama_dir, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(NodepruneError, match="model.safetensors|truncated or damaged"):
        load_model(str(folder))


def test_absurd_config_sizes_are_refused_before_building(tiny_llama_dir, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_llama_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 10**20  # would build layers until memory runs out
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(NodepruneError, match="num_hidden_layers"):
        load_model(str(folder))
