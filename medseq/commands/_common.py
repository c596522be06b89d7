"""What every command shares: error reporting, output formats, shard parsing."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from enum import Enum
from typing import ParamSpec, TypeVar

import typer

from medseq.errors import ExitCode, MedseqError, UsageError, one_line
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
    """Parse ``K/N`` (1-based K) into ``(k, n)``; ``None`` passes through."""
    if text is None:
        return None
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise UsageError(f"--shard must look like K/N (for example 2/8), got {text!r}") from None
    if n < 1 or not 1 <= k <= n:
        raise UsageError(f"--shard {text}: need 1 <= K <= N")
    return k, n


def _print_error(message: str) -> None:
    sys.stderr.write(f"error: {one_line(message)}\n")
    sys.stderr.flush()
