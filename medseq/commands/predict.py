"""`medseq predict` (not built yet)."""

from __future__ import annotations

from medseq.commands._common import reports_errors
from medseq.errors import UsageError


@reports_errors
def command() -> None:
    """Not built yet."""
    raise UsageError("medseq predict is not built yet")
