"""Writing files safely: every file nodeprune writes goes through here.

* **Atomic**: the data goes to ``NAME.tmp`` (created fresh, synced), which is then
  renamed over ``NAME``; a reader sees the old file or the new one, never half of one,
  and a write that fails (disk full, read-only file system) removes its ``.tmp`` and
  leaves the old file as it was -- never a 0-byte file.
* **Never through a symbolic link**: a link planted at ``NAME`` is replaced by the
  rename (its target is untouched); one planted at ``NAME.tmp`` is removed, and the
  temporary file is created with ``O_EXCL | O_NOFOLLOW``. With ``root`` (a run folder),
  every folder between ``root`` and the file must be a real folder: a link there (a
  planted ``figures/``) is refused, as writing into it would write outside the run.
* **One-line errors**: an ``OSError`` becomes a :class:`WriteError` that names the path,
  the problem and the fix.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from .errors import NodepruneError

TMP_SUFFIX = ".tmp"
#: Name of the file :func:`check_writable` writes and removes again.
PROBE_FILE = ".nodeprune-write-test"

_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EACCES: "permission denied: write to a folder you may write to",
    errno.EPERM: "permission denied: write to a folder you may write to",
    errno.ENOTDIR: "part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.ELOOP: "it is a symbolic link, which nodeprune does not write through",
}


def warn(message: str) -> None:
    """A one-line warning on standard error, next to the CLI's one-line errors."""
    print(f"nodeprune: warning: {message}", file=sys.stderr)


class WriteError(NodepruneError):
    """A file or folder could not be written; nothing half-written was left behind."""

    def __init__(
        self, message: str, path: Path, errno_: int | None = None, reason: str = ""
    ) -> None:
        super().__init__(message)
        self.path = path
        self.errno = errno_
        #: The problem and its fix, without the path (for messages that name it otherwise).
        self.reason = reason or message


def describe(exc: OSError) -> str:
    """An OSError's reason and what to do about it, on one line."""
    reason = exc.strerror or type(exc).__name__
    hint = _HINTS.get(exc.errno or -1)
    return f"{reason.lower()}; {hint}" if hint else reason.lower()


def write_error(path: Path, exc: OSError, doing: str = "write") -> WriteError:
    reason = describe(exc)
    return WriteError(f"cannot {doing} {path}: {reason}", path, exc.errno, reason)


def _link_error(path: Path) -> WriteError:
    try:
        target = f" (to {os.readlink(path)})"
    except OSError:
        target = ""
    return WriteError(
        f"{path} is a symbolic link{target}; nodeprune never writes through a link inside "
        "a run folder, as that would write outside it: remove the link",
        path,
        errno.ELOOP,
    )


def _not_a_folder(path: Path) -> WriteError:
    return WriteError(
        f"{path} is a file, not a folder; remove or rename it, or write elsewhere",
        path,
        errno.ENOTDIR,
    )


def ensure_folder(folder: str | Path, root: str | Path | None = None) -> Path:
    """Create ``folder`` (with its parents) and return it. With ``root``, ``folder`` must
    lie inside ``root``, and no folder from ``root`` down to it may be a symbolic link."""
    d = Path(folder)
    if root is None:
        if d.is_dir():
            return d
        if d.exists() or d.is_symlink():
            raise _not_a_folder(d)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise _not_a_folder(d) from None
        except OSError as exc:
            raise write_error(d, exc, "create the folder") from exc
        return d
    base = ensure_folder(root)
    try:
        parts = d.relative_to(base).parts
    except ValueError:
        raise WriteError(f"{d} is not inside {base}", d) from None
    current = base
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise _link_error(current)
        if not current.exists():
            try:
                current.mkdir()
            except FileExistsError:  # made just now by someone else: checked below
                pass
            except OSError as exc:
                raise write_error(current, exc, "create the folder") from exc
        if current.is_symlink():
            raise _link_error(current)
        if not current.is_dir():
            raise _not_a_folder(current)
    return d


def check_file_target(path: str | Path, what: str = "") -> Path:
    """``path`` can be written as a file: it is no folder and its parent is no file."""
    p = Path(path)
    label = f"{what} " if what else ""
    if p.is_dir() and not p.is_symlink():
        raise WriteError(
            f"{label}{p} is a folder; give the path of a file (e.g. {p / 'circuit.json'})",
            p,
            errno.EISDIR,
        )
    for parent in p.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise _not_a_folder(parent)
            break
    return p


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_temp(path: str | Path, data: bytes | str, root: str | Path | None = None) -> Path:
    """Write ``data`` in full to ``path``.tmp (synced) and return that path; the first
    half of :func:`atomic_write`, for writes of several files renamed together."""
    p = check_file_target(path)
    ensure_folder(p.parent, root)
    blob = data.encode("utf-8") if isinstance(data, str) else data
    tmp = p.with_name(p.name + TMP_SUFFIX)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for attempt in range(3):
        try:
            if os.path.lexists(tmp):
                os.unlink(tmp)  # stale or planted; unlink removes a link, not its target
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:  # planted again between the unlink and the open
            if attempt == 2:
                raise write_error(p, FileExistsError(errno.EEXIST, "file exists")) from None
        except OSError as exc:
            raise write_error(p, exc) from exc
    try:
        try:
            _write_all(fd, blob)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        discard(tmp)
        raise write_error(p, exc) from exc
    return tmp


def commit(tmp: Path, path: str | Path) -> Path:
    """Rename a file from :func:`write_temp` over ``path`` (a link there is replaced)."""
    p = Path(path)
    try:
        os.replace(tmp, p)
    except OSError as exc:
        discard(tmp)
        raise write_error(p, exc) from exc
    return p


def discard(*paths: Path) -> None:
    """Remove temporary files, quietly (they are being given up anyway)."""
    for p in paths:
        try:
            os.unlink(p)
        except OSError:
            pass


def sync_folder(folder: str | Path) -> None:
    """Make renames in ``folder`` durable (where the platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes | str, root: str | Path | None = None) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` atomically, never through a link; with
    ``root``, also never through a linked folder between ``root`` and ``path``."""
    p = Path(path)
    commit(write_temp(p, data, root), p)
    sync_folder(p.parent)
    return p


def write_json(
    path: str | Path, data: Any, indent: int | None = 1, root: str | Path | None = None
) -> Path:
    """``data`` as JSON (one trailing newline) through :func:`atomic_write`: the one way
    nodeprune's JSON files (circuits, tables, exports) reach the disk."""
    return atomic_write(path, json.dumps(data, indent=indent) + "\n", root=root)


def check_writable(folder: str | Path, what: str = "the output folder", need: int = 0) -> Path:
    """Create ``folder`` if needed and check, by writing a file there, that it can be
    written, and that it has ``need`` bytes free: before the work, not after it."""
    d = Path(folder)
    if (d.exists() or d.is_symlink()) and not d.is_dir():
        raise WriteError(
            f"{what} {d} is a file, not a folder; give a folder (or remove the file)",
            d,
            errno.ENOTDIR,
        )
    ensure_folder(d)
    probe = d / f"{PROBE_FILE}.{os.getpid()}"
    try:
        atomic_write(probe, b"nodeprune\n")
    except WriteError as exc:
        message = f"cannot write in {what} {d}: {exc.reason}"
        raise WriteError(message, d, exc.errno, exc.reason) from exc
    finally:
        discard(probe)
    check_free_space(d, need, what)
    return d


def check_free_space(folder: str | Path, need: int, what: str = "the output folder") -> None:
    if need <= 0:
        return
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # not knowable here; the writes themselves still fail cleanly
    if free < need:
        raise WriteError(
            f"{what} {folder} has {_size(free)} free, but this run writes about "
            f"{_size(need)} (checkpoint and circuit); free some space or choose another folder",
            Path(folder),
            errno.ENOSPC,
        )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
