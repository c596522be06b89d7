"""Progress of long jobs on stderr: a live bar on a terminal, a plain line every few seconds
elsewhere.

Rich draws nothing while stderr is not a terminal (a CI log, ``nohup``, a pipe) and one bar when
the job ends, so a log would show nothing for minutes. :class:`ProgressBar` keeps the live bar
for terminals and otherwise writes ``label: 5/12 patients (42%), 13.0/min, 0:23 elapsed, ETA
0:32`` at most every :data:`PLAIN_INTERVAL_S` seconds, plus a last line at the end. Every
command's progress goes through it.

Example:
    with ProgressBar("preprocess", unit="patients", total=12) as bar:
        for done in range(1, 13):
            bar.update(done)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from rich.console import Console

from medseq.console import stderr

PLAIN_INTERVAL_S = 5.0
"""Least time between two plain progress lines."""


class ProgressBar:
    """Progress of one countable job (``done`` of ``total`` items; total may be unknown).

    Args:
        label: what runs, e.g. ``preprocess`` or ``fold 2``.
        unit: what is counted, e.g. ``patients``.
        total: number of items, if known (``update`` may set or change it).
        console: where to write (default: stderr).
        interval_s: least seconds between plain lines.
        clock: monotonic seconds (tests pass a fake one).
        transient: remove the live bar when done (terminals only).
        enabled: False writes nothing (``--quiet``).
    """

    def __init__(
        self,
        label: str,
        *,
        unit: str = "",
        total: int | None = None,
        console: Console | None = None,
        interval_s: float = PLAIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        transient: bool = False,
        enabled: bool = True,
    ) -> None:
        self.label = label
        self.unit = unit
        self.total = total
        self.console = console if console is not None else stderr
        self.interval_s = interval_s
        self.clock = clock
        self.transient = transient
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        """A rich bar (terminal) rather than plain lines."""
        self.done = 0
        self.info = ""
        self._bar: Any = None
        self._task: Any = None
        self._started = 0.0
        self._last_line: float | None = None
        self._printed: tuple[int, str] | None = None
        self._updated = False

    def __enter__(self) -> ProgressBar:
        self._started = self.clock()
        if self.live:
            self._bar = _rich_bar(self.console, transient=self.transient)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, rate="", info="")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.enabled and self._updated and self._printed != (self.done, self.info):
            self._print_line()

    def update(self, done: int, total: int | None = None, *, info: str | None = None) -> None:
        """``done`` items finished (of ``total``, when given); ``info`` is shown after the count."""
        self.done = done
        self._updated = True
        if total is not None:
            self.total = total
        if info is not None:
            self.info = info
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=self.total, rate=self._rate(),
                             info=self.info)
            return
        now = self.clock()
        if self._last_line is None or now - self._last_line >= self.interval_s:
            self._print_line()

    def print(self, text: str) -> None:
        """A message line above the bar (or between the plain lines)."""
        if self.enabled:
            print_line(text, self.console)

    def line(self) -> str:
        """The plain progress line for the current state."""
        elapsed = max(0.0, self.clock() - self._started)
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        parts = [f"{self.label}: {count}" + (f" {self.unit}" if self.unit else "")]
        if self.total:
            parts[0] += f" ({100 * self.done // self.total}%)"
        rate = self._rate()
        if rate:
            parts.append(rate)
        parts.append(f"{_clock(elapsed)} elapsed")
        if self.total and 0 < self.done < self.total and elapsed > 0:
            parts.append(f"ETA {_clock(elapsed / self.done * (self.total - self.done))}")
        text = ", ".join(parts)
        return f"{text}; {self.info}" if self.info else text

    def _print_line(self) -> None:
        self._last_line = self.clock()
        self._printed = (self.done, self.info)
        print_line(self.line(), self.console)

    def _rate(self) -> str:
        elapsed = self.clock() - self._started
        if self.done <= 0 or elapsed <= 0 or not self.unit:
            return ""
        return f"{self.done / elapsed * 60:.1f}/min"


def print_line(text: str, console: Console | None = None) -> None:
    """One message line on stderr (or ``console``), as it is: no markup, no highlighting."""
    (console if console is not None else stderr).print(text, markup=False, highlight=False)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _rich_bar(console: Console, *, transient: bool) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
        transient=transient,
    )
