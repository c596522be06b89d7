"""Map a function over a list with two processes: this one and one forked child.

Made for reading thousands of DICOM headers: the child starts in a millisecond with everything
already imported (``os.fork``), reads the second half while this process reads the first, and
sends its results back once, pickled through a pipe. Results come in input order and are the
same as a plain loop's; if the child fails in any way its half is done here instead.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

__all__ = ["can_fork", "map_in_two"]

T = TypeVar("T")
R = TypeVar("R")


def can_fork() -> bool:
    """Two CPUs usable by this process and ``os.fork`` available (not Windows)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    return cpus >= 2 and hasattr(os, "fork")


def map_in_two(func: Callable[[T], R], items: Sequence[T], *,
               progress: Callable[[int], None] | None = None, every: int = 200) -> Iterator[R]:
    """``func(item)`` for every item, in order; a forked child does the second half.

    ``progress`` is called with the number of items done (every ``every`` items of this
    process's half, then with the total).
    """
    half = (len(items) + 1) // 2
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its half, pickled into the pipe, then gone without cleanup
        status = 1
        try:
            os.close(read_end)
            # Fresh standard streams: another thread (a progress bar) may have held the old
            # ones' locks at the fork, and a warning written there would wait forever.
            sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (gone at _exit)
            data = pickle.dumps([func(item) for item in items[half:]],
                                protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_end, "wb") as out:
                out.write(data)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    reader = os.fdopen(read_end, "rb")
    try:
        for done, item in enumerate(items[:half], start=1):
            if progress is not None and done % every == 0:
                progress(done)
            yield func(item)
        data = reader.read()  # the child writes only when done: EOF follows its results
        reader.close()
        _, status = os.waitpid(pid, 0)
        pid = 0
        rest: list[R] | None = None
        if status == 0:
            try:
                rest = pickle.loads(data)
            except Exception:
                rest = None
        if rest is None or len(rest) != len(items) - half:
            rest = [func(item) for item in items[half:]]  # the child failed: do it here
        if progress is not None:
            progress(len(items))
        yield from rest
    finally:
        reader.close()
        if pid:  # abandoned early (an error in the caller): stop the child we started
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
