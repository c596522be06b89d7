"""Dates of scans and the order of a patient's timepoints (baseline first, days from it)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path

from medseq.errors import LayoutError
from medseq.io.cohort import Timepoint

_ISO_DASHED = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
_ISO_COMPACT = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)")


def parse_date(text: str) -> dt.date | None:
    """A date written ``YYYY-MM-DD`` or ``YYYYMMDD`` (DICOM DA), else ``None``."""
    text = text.strip()
    for pattern in (_ISO_DASHED, _ISO_COMPACT):
        match = pattern.fullmatch(text)
        if match:
            return _valid_date(*match.groups())
    return None


def date_in_name(name: str) -> dt.date | None:
    """The first valid ISO date inside a folder name (``ct_2023-01-15``, ``20230115_followup``)."""
    for pattern in (_ISO_DASHED, _ISO_COMPACT):
        for match in pattern.finditer(name):
            date = _valid_date(*match.groups())
            if date is not None:
                return date
    return None


def in_date_order(timepoints: Sequence[Timepoint], *, patient_id: str, where: Path | str
                  ) -> tuple[Timepoint, ...]:
    """Timepoints sorted by date with ``days`` set from the first (baseline).

    Undated timepoints are only accepted when none is dated: they keep the given order
    (the caller sorts by name) and get ``days=None``.

    Raises:
        LayoutError: some timepoints are dated and others are not, so the order is unknown.
    """
    dated = [tp for tp in timepoints if tp.date is not None]
    if not dated:
        return tuple(dataclasses.replace(tp, days=None) for tp in timepoints)
    undated = [tp.name for tp in timepoints if tp.date is None]
    if undated:
        raise LayoutError(
            f"patient {patient_id}: no date for timepoint(s) {', '.join(undated)} while others "
            "are dated, so their order is unknown; give every timepoint a date",
            path=where,
        )
    ordered = sorted(dated, key=lambda tp: tp.date or dt.date.min)
    baseline = ordered[0].date or dt.date.min
    return tuple(dataclasses.replace(tp, days=(tp.date - baseline).days if tp.date else None)
                 for tp in ordered)


def _valid_date(year: str, month: str, day: str) -> dt.date | None:
    try:
        date = dt.date(int(year), int(month), int(day))
    except ValueError:
        return None
    return date if 1900 <= date.year <= 2200 else None
