"""One run at a time in a run folder: ``RUN/.nodeprune.lock``.

The lock is an ``flock`` on that file, so the kernel releases it when its process ends
in any way (kill -9 included): a lock left by a dead process is simply taken over. The
file holds the pid, host and start time of its holder, for the message that refuses a
second run. Where the file system has no ``flock``, the pid in the file decides: a
live process on this host (or any on another host) holds the folder, a dead one does
not. The holder removes the file when it is done.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from .errors import NodepruneError
from .run_files import LOCK_FILE

_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def _holder_text(info: dict[str, Any]) -> str:
    pid, host = info.get("pid", "?"), info.get("host", "?")
    started = info.get("started", "an unknown time")
    command = " ".join(str(info.get("command", "")).split())[:120]
    text = f"pid {pid} on host {host}, started {started}"
    return f"{text}: {command}" if command else text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class FolderLock:
    """Hold ``folder``/.nodeprune.lock for the duration of a run."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
        try:
            return os.open(self.path, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise NodepruneError(
                    f"{self.path} is a symbolic link; nodeprune never writes through a link "
                    "inside a run folder: remove it"
                ) from None
            raise NodepruneError(
                f"cannot create the lock file {self.path}: {(exc.strerror or '').lower()}; "
                "choose an output folder you may write to"
            ) from exc

    def _refuse(self, info: dict[str, Any]) -> NodepruneError:
        return NodepruneError(
            f"{self.folder} is in use by another nodeprune run ({_holder_text(info)}); "
            "wait for it to end or stop it, or choose another --out"
        )

    def _read(self, fd: int) -> dict[str, Any]:
        try:
            data = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self) -> FolderLock:
        for _ in range(20):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = self._read(fd)
                os.close(fd)
                raise self._refuse(info) from None
            except OSError as exc:
                if exc.errno not in _NO_FLOCK:
                    os.close(fd)
                    raise
                self._check_pid(fd)
            # The holder before us may have removed the file between our open and our
            # lock: then we hold a lock on a file nobody else sees. Start again.
            try:
                same = os.path.samestat(os.fstat(fd), os.lstat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            self._fd = fd
            self._write_info()
            return self
        raise NodepruneError(f"could not lock {self.path}: it keeps being replaced")

    def _check_pid(self, fd: int) -> None:
        info = self._read(fd)
        pid, host = info.get("pid"), info.get("host")
        if not isinstance(pid, int) or pid == os.getpid():
            return
        if host != socket.gethostname() or _alive(pid):
            os.close(fd)
            raise self._refuse(info)

    def _write_info(self) -> None:
        assert self._fd is not None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join(["nodeprune", *sys.argv[1:]]),
        }
        data = (json.dumps(info) + "\n").encode("utf-8")
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        except OSError:
            pass  # the lock holds without its note (a full disk); messages say less

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding it, so no one locks a removed file
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
