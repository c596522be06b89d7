"""Process lifetimes: who owns a file, workers that die with their parent, clean termination.

* :func:`owner_tag` names this process (host and pid) inside temporary file names, so a later run
  can tell a live writer's file from one a killed writer left behind (:func:`owner_alive`).
* :func:`exit_with_parent` makes a pool worker exit when the process that started the pool dies
  (even by SIGKILL), instead of waiting forever on its task queue.
* :func:`raising_on_termination` turns SIGTERM and SIGHUP into a :class:`Terminated` exception,
  so ``finally`` blocks (temporary folders) run as they do for Ctrl-C.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

HOST_TAG = hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]
"""This machine, as 6 hex characters (temporary names must not grow with the host name)."""

TERMINATING_SIGNALS = ("SIGTERM", "SIGHUP")
_PR_SET_PDEATHSIG = 1


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived (a BaseException, like KeyboardInterrupt, so that
    ``except Exception`` handlers do not swallow it)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"terminated by {self.name}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process killed by that signal."""
        return 128 + self.signum


def owner_tag() -> str:
    """``<host tag>-<pid>`` of the calling process."""
    return f"{HOST_TAG}-{os.getpid()}"


def owner_alive(host: str, pid: int) -> bool | None:
    """True/False for a process of this machine; None (unknown) for another machine's."""
    if host != HOST_TAG:
        return None
    return pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine is running (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) said it exists
    return state not in (b"Z", b"X")


def exit_with_parent(parent_pid: int, *, interval: float = 0.5) -> None:
    """Exit this process as soon as ``parent_pid`` dies (call in a pool worker's initializer).

    On Linux the kernel also kills this process when its direct parent dies (PR_SET_PDEATHSIG;
    under a fork server that is the server, not ``parent_pid``). A daemon thread watches
    ``parent_pid`` itself: through a pidfd where the kernel has them (no polling, no pid reuse),
    else by checking it every ``interval`` seconds.
    """
    _set_parent_death_signal()
    if not pid_alive(parent_pid):
        os._exit(1)
    pidfd: int | None = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(parent_pid)  # type: ignore[attr-defined,unused-ignore]
    thread = threading.Thread(target=_watch, args=(parent_pid, os.getppid(), pidfd, interval),
                              name="medseq-parent-watch", daemon=True)
    thread.start()


def _watch(parent_pid: int, ppid: int, pidfd: int | None, interval: float) -> None:
    while True:
        if pidfd is not None:
            ready, _, _ = select.select([pidfd], [], [], interval)
            if ready:
                break
        else:
            time.sleep(interval)
        if os.getppid() != ppid or not pid_alive(parent_pid):
            break
    os._exit(1)  # no cleanup: our temporary files carry our pid, the next run removes them


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


@contextlib.contextmanager
def raising_on_termination() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` (once: a repeated signal
    during the clean-up is ignored); the previous handlers are restored afterwards.

    Outside the main thread (where Python cannot install handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise Terminated(signum)

    previous: dict[int, Any] = {}
    try:
        for name in TERMINATING_SIGNALS:
            number = getattr(signal, name, None)
            if number is not None:
                previous[number] = signal.signal(number, handler)
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


__all__ = [
    "HOST_TAG",
    "Terminated",
    "exit_with_parent",
    "owner_alive",
    "owner_tag",
    "pid_alive",
    "raising_on_termination",
]
