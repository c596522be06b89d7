"""What every command shares: error reporting, output formats, shard parsing."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Mapping
from enum import Enum
from typing import ParamSpec, TypeVar

import typer

from medseq.errors import ExitCode, InputDataError, MedseqError, UsageError, one_line
from medseq.processes import Terminated

P = ParamSpec("P")
R = TypeVar("R")


class OutputFormat(str, Enum):
    """How a reporting command writes its data to stdout."""

    table = "table"
    json = "json"
    csv = "csv"


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn user errors into one stderr line and an exit code; never show a traceback.

    ``MEDSEQ_DEBUG=1`` re-raises unexpected errors so developers see the traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except MedseqError as err:
            _print_error(str(err))
            raise typer.Exit(int(err.exit_code)) from None
        except KeyboardInterrupt:
            _print_error("interrupted")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except Terminated as err:  # SIGTERM / SIGHUP where a command asked for clean-up
            _print_error(f"terminated ({err.name})")
            raise typer.Exit(err.exit_code) from None
        except Exception as err:
            if os.environ.get("MEDSEQ_DEBUG"):
                raise
            _print_error(
                f"internal error ({type(err).__name__}: {one_line(err, limit=300)}); "
                "rerun with MEDSEQ_DEBUG=1 for the traceback and report it"
            )
            raise typer.Exit(int(ExitCode.USAGE)) from None

    return wrapper


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """Parse ``K/N`` (1-based K) or ``auto`` into ``(k, n)``; ``None`` passes through."""
    if text is None:
        return None
    if text.strip().lower() == "auto":
        return slurm_array_shard(os.environ)
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise UsageError(f"--shard must look like K/N (for example 2/8), got {text!r}") from None
    if n < 1 or not 1 <= k <= n:
        raise UsageError(f"--shard {text}: need 1 <= K <= N")
    return k, n


def slurm_array_shard(env: Mapping[str, str]) -> tuple[int, int]:
    """``(k, n)`` of this SLURM array task: ``SLURM_ARRAY_TASK_ID`` counted from
    ``SLURM_ARRAY_TASK_MIN`` (0 if unset) in steps of ``SLURM_ARRAY_TASK_STEP`` (1), of
    ``SLURM_ARRAY_TASK_COUNT`` tasks.

    Raises:
        InputDataError: not in an array job, or values that make no shard (exit code 2).
    """
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")
    if not all(env.get(name) for name in names):
        raise InputDataError("--shard auto: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT "
                             "are not set (not a SLURM array task); give --shard K/N")
    try:
        task, count = int(env[names[0]]), int(env[names[1]])
        first = int(env.get("SLURM_ARRAY_TASK_MIN") or 0)
        step = int(env.get("SLURM_ARRAY_TASK_STEP") or 1)
    except ValueError:
        raise InputDataError("--shard auto: SLURM_ARRAY_TASK_* variables are not integers"
                             ) from None
    offset, rest = divmod(task - first, max(step, 1))
    k = offset + 1
    if rest or count < 1 or not 1 <= k <= count:
        raise InputDataError(f"--shard auto: array task {task} is not one of {count} tasks "
                             f"from {first} in steps of {step}")
    return k, count


def _print_error(message: str) -> None:
    sys.stderr.write(f"error: {one_line(message)}\n")
    sys.stderr.flush()
