"""Training progress on stderr and in ``log.txt`` (every epoch).

What is shown goes through the shared helpers of :mod:`medseq.progress`: one
:class:`~medseq.progress.ProgressBar` per model, :func:`~medseq.progress.print_line` for the
messages between models. This module adds only what is training's: the log and the epoch text.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

from medseq.progress import ProgressBar, print_line

MIN_VAL_PER_CLASS = 5
"""Fewer validation patients of a class than this and the validation AUC is not shown: with one
or two patients it swings between 0 and 1 and says nothing about the model."""


class Reporter:
    """Tells the user (stderr) and the run directory (``log.txt``) how training goes."""

    def __init__(self, log_path: Path | None, *, enabled: bool = True) -> None:
        self.log_path = log_path
        self.enabled = enabled
        self._bar: ProgressBar | None = None
        self._open = ExitStack()
        self._show_auc = True
        self._started = time.perf_counter()

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._finish()

    def message(self, text: str) -> None:
        """A line for the user and the log (messages come between models: it ends the bar)."""
        self._finish()
        self._log(text)
        if self.enabled:
            print_line(text)

    def start_model(self, title: str, epochs: int, *,
                    validation: tuple[int, int] | None = None) -> None:
        """A new bar for one fold (or the final model).

        Args:
            title: ``fold 2/5`` or ``final model``.
            epochs: most epochs it can run.
            validation: (non-responders, responders) in its validation split, if it has one.
        """
        self._finish()
        self._log(f"{title}: up to {epochs} epochs")
        self._show_auc = validation is None or min(validation) >= MIN_VAL_PER_CLASS
        if validation is not None and not self._show_auc:
            self.message(
                f"{title}: validation split of {_count(sum(validation), 'patient')} "
                f"({_count(validation[1], 'responder')}, "
                f"{_count(validation[0], 'non-responder')}) is too small for a meaningful AUC "
                f"(fewer than {MIN_VAL_PER_CLASS} of a class); showing the validation loss only"
            )
        self._bar = self._open.enter_context(
            ProgressBar(title, unit="epochs", total=epochs, enabled=self.enabled))

    def epoch(self, title: str, row: dict[str, Any]) -> None:
        """One finished epoch."""
        stats = f"loss {row['train_loss']:.4f}"
        if "val_loss" in row:
            stats += f"  val loss {row['val_loss']:.4f}"
        if row.get("val_auc") is not None and self._show_auc:
            stats += f"  val AUC {row['val_auc']:.3f}"
        self._log(f"{title} epoch {row['epoch']}: {stats}")
        if self._bar is not None:
            self._bar.update(int(row["epoch"]), info=stats)

    def _finish(self) -> None:
        self._open.close()  # the bar's last line (plain output) or its end (terminal)
        self._bar = None

    def _log(self, text: str) -> None:
        if self.log_path is None:
            return
        elapsed = time.perf_counter() - self._started
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(f"[{elapsed:8.1f}s] {text}\n")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
