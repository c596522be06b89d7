"""Real processes for the concurrency tests: a lock holder, a dead pid, a process tree."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_HOLDER = """
import sys
from pathlib import Path
from medseq.io.writer_lock import writer_lock
shard = tuple(int(v) for v in sys.argv[2].split("/")) if sys.argv[2] != "-" else None
with writer_lock(Path(sys.argv[1]), shard=shard, what=sys.argv[3]):
    print("locked", flush=True)
    sys.stdin.read()
"""


def env() -> dict[str, str]:
    """The environment for a child ``python``: this checkout first on the path."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT),
            "OMP_NUM_THREADS": "1"}


@contextlib.contextmanager
def lock_holder(folder: Path, *, shard: tuple[int, int] | None = None,
                what: str = "output folder") -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``folder``'s writer lock until the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(folder), f"{shard[0]}/{shard[1]}" if shard else "-",
         what], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env())
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "locked"
        yield process
    finally:
        if process.stdin is not None:
            process.stdin.close()
        process.wait(timeout=30)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")
