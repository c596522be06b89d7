"""Where output goes: data on stdout, progress, logs and errors on stderr.

Pipelines rely on this split, so commands never print anything but their data to stdout.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

stderr = Console(stderr=True, highlight=False, soft_wrap=True)
"""Human-facing console: progress bars, tables of summaries, warnings."""


def stdout_console() -> Console:
    """A console on the current stdout (looked up per call so test runners can capture it)."""
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def emit_json(data: Any) -> None:
    """Write one JSON document to stdout, newline-terminated."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    """One warning line on stderr."""
    stderr.print(f"[yellow]warning:[/yellow] {escape(message)}", markup=True)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
