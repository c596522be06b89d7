"""``schema_version`` of the documents medseq prints and never reads back.

The ``--json`` outputs of ``info``, ``preprocess`` and ``sample-data`` start with
``schema_version``, an integer that goes up when the document's keys or their meaning change
incompatibly (an added key does not count). Documents one stage writes and another reads carry
their own version in :mod:`medseq.contracts` (with the rule for files without one);
``docs/cli.md`` lists them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCHEMA_VERSION = 1
"""Version of the documents that have no constant of their own."""


def versioned(document: Mapping[str, Any], version: int = SCHEMA_VERSION) -> dict[str, Any]:
    """``document`` with ``schema_version`` first (a version it already holds is kept)."""
    return {"schema_version": version, **document}
