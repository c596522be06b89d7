"""``schema_version``: the version of every JSON document medseq writes.

Each JSON file and ``--json`` output starts with ``schema_version``, an integer that goes up
when that document's keys or their meaning change incompatibly (an added key does not count).
A document written before versioning has no ``schema_version``; readers take it as version 1.
``docs/cli.md`` lists the documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCHEMA_VERSION = 1
"""Version of the documents that have no constant of their own."""


def versioned(document: Mapping[str, Any], version: int = SCHEMA_VERSION) -> dict[str, Any]:
    """``document`` with ``schema_version`` first (a version it already holds is kept)."""
    return {"schema_version": version, **document}


def schema_version(document: Mapping[str, Any]) -> int:
    """The document's ``schema_version``; 1 for documents written before versioning."""
    value = document.get("schema_version", 1)
    return int(value) if isinstance(value, int | float | str) else 1
