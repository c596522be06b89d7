"""One writer per output folder: ``flock`` on ``FOLDER/.writer.lock``, released by the kernel.

``preprocess`` (the cache), ``track`` (OUT) and ``train`` (RUN) hold the lock for their whole
run. A second writer is refused at once with :class:`OutputInUseError` (exit code 1) naming the
process that holds it. The lock dies with its process, so a killed run never leaves a stale lock.

Shards of one cache (``preprocess --shard K/N``) write together: each takes the folder's lock
*shared* plus an exclusive lock of its own shard (``.writer.shard-K-of-N.lock``), so shards
coexist while a second copy of one shard, or a run without ``--shard``, is refused. Shards do
not depend on these locks for correctness (patients are committed one by one, and cleanup
removes only files of dead processes): where ``flock`` is not supported (some network file
systems) the lock is skipped and the run goes on, but never counts as the sole writer.

Each lock file holds a small JSON record of its holder (pid, host, shard, start time).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from medseq.errors import OutputInUseError
from medseq.processes import pid_alive

LOCK_NAME = ".writer.lock"
SHARD_LOCK = ".writer.shard-{k}-of-{n}.lock"
_RECORD_WAIT_S = 1.0
_HELD: dict[tuple[str, tuple[int, int] | None], WriterLock] = {}


@dataclass
class WriterLock:
    """A held writer lock (see the module docstring); release it with :meth:`release`."""

    folder: Path
    sole_writer: bool
    """True when this process holds the folder's lock exclusively: no other medseq process
    writes the folder, so every temporary file in it is abandoned."""
    created_folder: bool = False
    _handles: list[IO[bytes]] = field(default_factory=list)

    def release(self) -> None:
        for handle in self._handles:
            handle.close()  # closing the descriptor drops the flock
        self._handles.clear()


@contextlib.contextmanager
def writer_lock(folder: Path, *, shard: tuple[int, int] | None = None,
                what: str = "output folder") -> Iterator[WriterLock]:
    """Hold ``folder``'s writer lock for the block (the folder is created if needed).

    Re-entrant: a nested block of the same process for the same folder and shard shares it.

    If the block fails and this call created the folder, which still holds nothing but the
    lock files, the folder is removed again: a refused run leaves nothing behind.

    Raises:
        OutputInUseError: another process writes ``folder`` (exit code 1).
    """
    key = (os.path.realpath(folder), shard)
    if key in _HELD:  # re-entered by the same process (a command, then its library call)
        yield _HELD[key]
        return
    lock = acquire(folder, shard=shard, what=what)
    _HELD[key] = lock
    ok = False
    try:
        yield lock
        ok = True
    finally:
        del _HELD[key]
        lock.release()
        if not ok and lock.created_folder:
            _remove_if_only_locks(lock.folder)


def acquire(folder: Path, *, shard: tuple[int, int] | None = None,
            what: str = "output folder") -> WriterLock:
    """Take ``folder``'s writer lock (see :func:`writer_lock`) and keep it until released."""
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + _RECORD_WAIT_S
    while True:
        lock = _try_acquire(folder, shard)
        if lock is not None:
            lock.created_folder = created
            return lock
        # The holder writes its record just after locking: give it a moment to appear.
        holder = _holder(folder, shard)
        if (holder is not None and _alive(holder)) or time.monotonic() > deadline:
            raise OutputInUseError(_in_use(what, holder or {}), path=folder)
        time.sleep(0.05)


def _try_acquire(folder: Path, shard: tuple[int, int] | None) -> WriterLock | None:
    """The lock, or None when another process holds a conflicting one."""
    lock = WriterLock(folder, sole_writer=False)
    main = _open(folder / LOCK_NAME)
    lock._handles.append(main)
    state = _try_flock(main, fcntl.LOCK_SH if shard is not None else fcntl.LOCK_EX)
    if state == "busy":
        lock.release()
        return None
    if shard is None:
        lock.sole_writer = state == "locked"
        if lock.sole_writer:
            _write_record(main, shard=None)
        return lock
    own = _open(folder / SHARD_LOCK.format(k=shard[0], n=shard[1]))
    lock._handles.append(own)
    if _try_flock(own, fcntl.LOCK_EX) == "busy":
        lock.release()
        return None
    _write_record(own, shard=shard)
    return lock


def _open(path: Path) -> IO[bytes]:
    return open(path, "a+b")  # held until released


def _try_flock(handle: IO[bytes], mode: int) -> str:
    """``locked``, ``busy`` (another process holds it) or ``unsupported`` (no flock here)."""
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return "busy"
        return "unsupported"
    return "locked"


def _write_record(handle: IO[bytes], *, shard: tuple[int, int] | None) -> None:
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "shard": f"{shard[0]}/{shard[1]}" if shard else None,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with contextlib.suppress(OSError):
        handle.seek(0)
        handle.truncate()
        handle.write((json.dumps(record) + "\n").encode("utf-8"))
        handle.flush()


def _holder(folder: Path, shard: tuple[int, int] | None) -> dict[str, Any] | None:
    """The record of a process whose lock keeps us out, or None if nobody holds one now."""
    main = folder / LOCK_NAME
    if _held(main, fcntl.LOCK_SH):
        return _record(main)  # held exclusively: by a run without --shard
    if shard is not None:
        candidates = [folder / SHARD_LOCK.format(k=shard[0], n=shard[1])]
    else:
        candidates = sorted(folder.glob(".writer.shard-*.lock"))
    for path in candidates:
        if _held(path, fcntl.LOCK_EX):
            return _record(path)
    return None


def _alive(record: dict[str, Any]) -> bool:
    """Whether a record names its holder: a live process here, or any on another machine."""
    pid, host = record.get("pid"), record.get("host")
    if not isinstance(pid, int):
        return False
    return host != socket.gethostname() or pid_alive(pid)


def _held(path: Path, mode: int) -> bool:
    """Whether another process holds a lock on ``path`` that conflicts with ``mode``."""
    try:
        with open(path, "rb") as probe:
            return _try_flock(probe, mode) == "busy"
    except OSError:
        return False


def _record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _in_use(what: str, record: dict[str, Any]) -> str:
    pid = record.get("pid")
    host = record.get("host")
    who = f"process {pid}" if isinstance(pid, int) else "another process"
    if isinstance(host, str) and host and host != socket.gethostname():
        who += f" on {host}"
    if record.get("shard"):
        who += f" (shard {record['shard']})"
    return f"{what} in use by {who}; wait for it to finish, or use another folder"


def _remove_if_only_locks(folder: Path) -> None:
    with contextlib.suppress(OSError):
        names = os.listdir(folder)
        if names and all(n == LOCK_NAME or n.startswith(".writer.shard-") for n in names):
            for name in names:
                os.unlink(folder / name)
        if not os.listdir(folder):
            folder.rmdir()


__all__ = ["LOCK_NAME", "WriterLock", "acquire", "writer_lock"]
