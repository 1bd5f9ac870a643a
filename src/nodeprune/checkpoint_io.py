"""The two files of a checkpoint, written and read safely.

A checkpoint is two files in the run's output folder: ``checkpoint.safetensors`` (the
tensors) and ``checkpoint.json`` (everything else; see checkpoint.py for what). Nothing
is pickled, so loading a checkpoint cannot run code.

Writes are atomic (:mod:`nodeprune.fsutil`): both files are first written in full under
temporary names, then renamed, tensors first. The JSON records the SHA-256 of the tensor
file, so a pair from two different writes is recognised; if a kill landed between the
two renames, the complete temporary JSON is still there and the write is finished on
load. The JSON also carries a SHA-256 of itself (``meta_sha256``, over its canonical
form without that field), so an edited value or a flipped bit in it -- the step, the
data cursor, the schedule, the learning rate, the config, the history -- is refused
rather than resumed into another run; and, for a task file, the SHA-256 of the file's
content (``task_file_sha256``), so a file edited between interrupt and resume is refused
too. Checkpoints of format 1 (before these checksums) still load, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import Tensor

from .errors import NodepruneError
from .fsutil import TMP_SUFFIX, WriteError, commit, discard, sync_folder, warn, write_temp
from .run_files import CHECKPOINT_META_FILE, CHECKPOINT_TENSORS_FILE

#: Format 2 added ``meta_sha256`` and ``task_file_sha256``; format 1 files still load.
CHECKPOINT_FORMAT = 2
READABLE_FORMATS = (1, 2)
TENSORS_FILE = CHECKPOINT_TENSORS_FILE
META_FILE = CHECKPOINT_META_FILE
META_CHECKSUM = "meta_sha256"
TASK_CHECKSUM = "task_file_sha256"
_WARNED: set[str] = set()


def checkpoint_files(folder: str | Path) -> list[Path]:
    """The checkpoint's files, with the temporary ones a killed write may leave."""
    d = Path(folder)
    names = (TENSORS_FILE, META_FILE)
    return [d / n for n in names] + [d / (n + TMP_SUFFIX) for n in names]


def has_checkpoint(folder: str | Path) -> bool:
    return (Path(folder) / META_FILE).is_file()


# -- file IO ---------------------------------------------------------------------------
def meta_checksum(meta: dict[str, Any]) -> str:
    """SHA-256 of the JSON's canonical form without its own checksum field: the same for
    any layout of the same values, different for any changed value."""
    body = {k: v for k, v in meta.items() if k != META_CHECKSUM}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_checkpoint(folder: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    d = Path(folder)
    blob = save_tensors(
        {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
        metadata={"nodeprune": "checkpoint", "step": str(meta.get("step"))},
    )
    meta = {k: v for k, v in meta.items() if k not in ("tensors_sha256", META_CHECKSUM)}
    meta["format_version"] = CHECKPOINT_FORMAT
    meta["tensors_sha256"] = hashlib.sha256(blob).hexdigest()
    meta[META_CHECKSUM] = meta_checksum(meta)
    text = json.dumps(meta, indent=1, allow_nan=False) + "\n"
    tensors_path, meta_path = d / TENSORS_FILE, d / META_FILE
    tensors_tmp = meta_tmp = None
    try:
        tensors_tmp = write_temp(tensors_path, blob, root=d)
        meta_tmp = write_temp(meta_path, text, root=d)
        commit(tensors_tmp, tensors_path)
        commit(meta_tmp, meta_path)
    except WriteError:
        # Whatever was renamed already is consistent: the old JSON refuses new tensors
        # (checksum), and a kill there is what the load-time repair handles; the
        # temporary files of a write that failed are removed, never left behind.
        discard(*(p for p in (tensors_tmp, meta_tmp) if p is not None))
        raise
    sync_folder(d)
    return meta_path


def damaged(folder: Path, why: str) -> NodepruneError:
    """The one-line error of a checkpoint that cannot be used as it is."""
    return NodepruneError(
        f"the checkpoint in {folder} is damaged ({why}); start over with --overwrite"
    )


def _parse_meta(path: Path, folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise damaged(folder, f"{path.name} is not readable JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise damaged(folder, f"{path.name} does not hold a JSON object")
    version = meta.get("format_version")
    if isinstance(version, bool) or version not in READABLE_FORMATS:
        raise NodepruneError(
            f"{path}: checkpoint format_version {version!r} is not "
            f"supported (this nodeprune reads versions "
            f"{', '.join(map(str, READABLE_FORMATS))}); start over with --overwrite"
        )
    if version == 1:
        if str(folder) not in _WARNED:  # once per folder, however often it is read
            _WARNED.add(str(folder))
            warn(
                f"the checkpoint in {folder} was written by an older nodeprune, without "
                f"checksums: edits to {path.name} or to the task file cannot be detected"
            )
        return meta
    try:
        expected = meta_checksum(meta)
    except (TypeError, ValueError) as exc:
        raise damaged(folder, f"{path.name} holds values that are not plain JSON") from exc
    if meta.get(META_CHECKSUM) != expected:
        raise damaged(
            folder,
            f"{path.name} was edited or corrupted: its content does not match its checksum "
            f"{META_CHECKSUM}",
        )
    return meta


def read_meta(folder: str | Path) -> dict[str, Any]:
    """The JSON half of a checkpoint (cheap: for the config check before loading a model)."""
    d = Path(folder)
    path = d / META_FILE
    if not path.is_file():
        raise NodepruneError(
            f"no checkpoint in {d} ({META_FILE} is missing); run without --resume to start"
        )
    return _parse_meta(path, d)


def read_checkpoint(folder: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    d = Path(folder)
    meta = read_meta(d)
    try:
        blob = (d / TENSORS_FILE).read_bytes()
    except OSError as exc:
        raise damaged(d, f"{TENSORS_FILE} is not readable: {exc}") from exc
    digest = hashlib.sha256(blob).hexdigest()
    if meta.get("tensors_sha256") != digest:
        pending = d / (META_FILE + TMP_SUFFIX)
        newer = _parse_meta(pending, d) if pending.is_file() else {}
        if newer.get("tensors_sha256") != digest:
            raise damaged(d, f"{TENSORS_FILE} does not match {META_FILE}")
        # Killed between the two renames of a write: the tensors are the new ones and
        # the new JSON is complete; finish that write.
        os.replace(pending, d / META_FILE)
        meta = newer
    try:
        tensors = load_tensors(blob)
    except SafetensorError as exc:
        raise damaged(d, f"{TENSORS_FILE}: {exc}") from exc
    return tensors, meta
