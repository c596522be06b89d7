"""The report's records: what was asked for, and the pieces the template shows."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MAX_PATIENTS = 50
"""Per-patient sections in one report unless ``--patient`` picks some."""


@dataclass(frozen=True)
class ReportOptions:
    """What ``medseq report`` was asked for."""

    patients: tuple[str, ...] = ()
    keep_ids: bool = False
    max_patients: int = DEFAULT_MAX_PATIENTS
    cache: Path | None = None
    band_resamples: int = 1000


@dataclass
class Figure:
    """One embedded figure."""

    key: str
    title: str
    caption: str
    data: str
    """Base64 PNG."""


@dataclass
class PatientSection:
    """Everything the template shows for one patient."""

    anchor: str
    display_id: str
    bor: str
    label: int | None
    probability: str
    baseline_probability: str
    fold: int | None
    forecast: str
    recist_rows: list[list[str]] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    note: str = ""


def figure(key: str, title: str, caption: str, png: bytes) -> Figure:
    """A figure record holding ``png`` as base64 for an inline ``data:`` URI."""
    return Figure(key=key, title=title, caption=caption,
                  data=base64.b64encode(png).decode("ascii"))
