"""Progress on stderr (a rich bar on terminals, one line per epoch otherwise) and ``log.txt``."""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from medseq.console import stderr


class Reporter:
    """Tells the user (stderr) and the run directory (``log.txt``) how training goes."""

    def __init__(self, log_path: Path | None, *, enabled: bool = True) -> None:
        self.log_path = log_path
        self.enabled = enabled
        self.live = enabled and stderr.is_terminal
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._started = time.perf_counter()

    def __enter__(self) -> Reporter:
        if self.live:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                console=stderr, transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def message(self, text: str) -> None:
        """A line for the user and the log."""
        self._log(text)
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            stderr.print(text, markup=False, highlight=False)

    def start_model(self, title: str, epochs: int) -> None:
        """A new bar for one fold (or the final model)."""
        self._log(f"{title}: up to {epochs} epochs")
        if self._progress is not None:
            if self._task is not None:
                self._progress.update(self._task, visible=False)
            self._task = self._progress.add_task(title, total=epochs, stats="")

    def epoch(self, title: str, row: dict[str, Any]) -> None:
        """One finished epoch."""
        stats = f"loss {row['train_loss']:.4f}"
        if "val_loss" in row:
            stats += f"  val loss {row['val_loss']:.4f}"
        if row.get("val_auc") is not None:
            stats += f"  val AUC {row['val_auc']:.3f}"
        line = f"{title} epoch {row['epoch']}: {stats}"
        self._log(line)
        if not self.enabled:
            return
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=row["epoch"], stats=stats)
        else:
            stderr.print(line, markup=False, highlight=False)

    def _log(self, text: str) -> None:
        if self.log_path is None:
            return
        elapsed = time.perf_counter() - self._started
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(f"[{elapsed:8.1f}s] {text}\n")
