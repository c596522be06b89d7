"""Errors users can cause, and the exit codes the CLI maps them to.

Every error a user's input or invocation can trigger is a :class:`MedseqError` subclass whose
message is one line naming the file and the reason. The CLI prints it on stderr and exits with
:attr:`MedseqError.exit_code`; anything else is a bug and exits 1.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


def one_line(message: object, *, limit: int | None = None) -> str:
    """``str(message)`` on one line (every run of whitespace one space), cut at ``limit``."""
    text = " ".join(str(message).split())
    return text if limit is None else text[:limit]


def first_line(message: object) -> str:
    """The first non-blank line of ``str(message)`` on one line: the reason an error from a
    library gives, without the detail it adds below."""
    return next((one_line(line) for line in str(message).splitlines() if line.strip()), "")


class ExitCode(IntEnum):
    """Process exit codes, documented in ``docs/cli.md``."""

    OK = 0
    USAGE = 1
    INVALID_INPUT = 2
    INTERRUPTED = 130


class MedseqError(Exception):
    """Base class of errors users can cause; ``str(err)`` is a single line."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.reason = one_line(message)
        super().__init__(f"{self.path}: {self.reason}" if self.path is not None else self.reason)


class UsageError(MedseqError):
    """The command line or a config file is wrong (exit code 1)."""

    exit_code = ExitCode.USAGE


class OutputInUseError(UsageError):
    """Another medseq process is writing the same output folder (exit code 1)."""


class InputDataError(MedseqError):
    """Input data cannot be used: bad DICOM, inconsistent geometry, bad masks (exit code 2)."""

    exit_code = ExitCode.INVALID_INPUT


class DicomError(InputDataError):
    """A DICOM file or series cannot be read or is geometrically inconsistent."""


class NiftiError(InputDataError):
    """A NIfTI file cannot be read or is unusable (4D, NaN, mismatched mask)."""


class LayoutError(InputDataError):
    """A folder holds no recognisable input layout, or the layout itself is broken."""


class CacheError(InputDataError):
    """A preprocessing cache or run directory is missing, incomplete or from another version."""


class InterruptedByUserError(MedseqError):
    """Ctrl-C (exit code 130); the message says how to continue, where that is possible."""

    exit_code = ExitCode.INTERRUPTED


class MissingDependencyError(UsageError):
    """An optional dependency is missing; the message names the extra to install."""
