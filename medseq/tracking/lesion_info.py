"""``--lesion-info``: what a plain mask cannot say about a lesion (its organ, whether it is a node).

The CSV has a header row and one row per lesion described:

``patient_id,timepoint,label,x,y,z,organ,nodal``

- ``patient_id``: the id in the cache (pseudonymous unless preprocess ran with ``--keep-ids``).
- ``timepoint``: the timepoint index (0 = baseline; ``t00`` style also accepted); default 0.
- ``label`` *or* ``x,y,z``: the lesion, either by the ``lesion`` number that ``lesions.csv``
  reports for that timepoint (the mask value in an integer label map, else the component number)
  or by a RAS+ point in mm on that timepoint's own scan (the lesion containing it, else the one
  whose centroid is nearest, within half its longest diameter + 5 mm).
- ``organ``: any text; empty means unknown. ``nodal``: yes/no (also true/false, 1/0); default no.

The information belongs to the lesion's track, so describing the baseline lesions is enough.
Without the file medseq assumes what a plain mask implies: no organ information (every lesion is
its own organ, so "at most 2 targets per organ" never binds) and no lymph nodes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from medseq.csv_cells import unescape_cell
from medseq.errors import InputDataError

_TRUE = {"yes", "y", "true", "1", "nodal", "node"}
_FALSE = {"no", "n", "false", "0", "", "non-nodal"}


@dataclass(frozen=True)
class LesionInfo:
    """One row of the lesion-info CSV."""

    patient_id: str
    timepoint: int
    label: int | None
    point_mm: tuple[float, float, float] | None
    organ: str | None
    nodal: bool
    line: int
    """Line number in the CSV, for error messages."""


def read_lesion_info(path: Path) -> dict[str, list[LesionInfo]]:
    """Parse the CSV into rows grouped by patient id.

    Raises:
        InputDataError: unreadable file, missing columns, or a row that cannot be parsed; the
            message names the file and the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        reason = err.strerror or str(err)
        raise InputDataError(f"cannot read lesion info ({reason})", path=path) from None
    reader = csv.DictReader(text.splitlines())
    fields = {name.strip().lower() for name in reader.fieldnames or []}
    if "patient_id" not in fields:
        raise InputDataError("lesion info needs a header row with a patient_id column", path=path)
    if "label" not in fields and not {"x", "y", "z"} <= fields:
        raise InputDataError("lesion info needs a label column or x,y,z columns", path=path)
    out: dict[str, list[LesionInfo]] = {}
    for number, raw in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        info = _parse_row(row, number, path)
        out.setdefault(info.patient_id, []).append(info)
    return out


def _parse_row(row: dict[str, str], line: int, path: Path) -> LesionInfo:
    def fail(reason: str) -> InputDataError:
        return InputDataError(f"line {line}: {reason}", path=path)

    patient = unescape_cell(row.get("patient_id") or "")
    if not patient:
        raise fail("empty patient_id")
    timepoint_text = row.get("timepoint", "").lower().lstrip("t") or "0"
    try:
        timepoint = int(timepoint_text)
    except ValueError:
        raise fail(f"timepoint {row.get('timepoint')!r} is not an index like 0 or t01") from None
    label: int | None = None
    point: tuple[float, float, float] | None = None
    if row.get("label"):
        try:
            label = int(row["label"])
        except ValueError:
            raise fail(f"label {row['label']!r} is not an integer") from None
    elif row.get("x") and row.get("y") and row.get("z"):
        try:
            point = (float(row["x"]), float(row["y"]), float(row["z"]))
        except ValueError:
            raise fail("x, y, z must be numbers (RAS+ mm)") from None
    else:
        raise fail("give either label or x, y, z")
    nodal_text = row.get("nodal", "").lower()
    if nodal_text in _TRUE:
        nodal = True
    elif nodal_text in _FALSE:
        nodal = False
    else:
        raise fail(f"nodal {row.get('nodal')!r} is not yes or no")
    return LesionInfo(patient_id=patient, timepoint=timepoint, label=label, point_mm=point,
                      organ=row.get("organ") or None, nodal=nodal, line=line)
