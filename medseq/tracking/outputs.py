"""``lesions.csv``, ``response.csv`` and ``tracks.json``: their one writer and one reader.

The records are those of :mod:`medseq.contracts.tracks`; here they become CSV rows (formula-like
text escaped, see :mod:`medseq.csv_cells`) and back. Columns are documented in
``docs/track.md``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from medseq import __version__
from medseq.contracts.document import validate
from medseq.contracts.tracks import (
    TRACKS_NAME,
    LesionRow,
    PatientTracking,
    Response,
    ResponseCsvRow,
    ResponseRow,
    TrackingSettings,
    TracksDocument,
    write_tracks,
)
from medseq.csv_cells import csv_text, unescape_cell
from medseq.errors import CacheError
from medseq.io.atomic import write_text_atomic

LESIONS_NAME = "lesions.csv"
RESPONSE_NAME = "response.csv"
LESION_COLUMNS: tuple[str, ...] = (
    "patient_id", "timepoint", "days", "track_id", "lesion", "status", "target", "nodal",
    "organ", "volume_ml", "longest_diameter_mm", "short_axis_mm", "centroid_x_mm",
    "centroid_y_mm", "centroid_z_mm", "baseline_x_mm", "baseline_y_mm", "baseline_z_mm",
    "volume_change_pct", "merged_into",
)
SOURCE_COLUMNS: tuple[str, ...] = ("source", "confidence")
"""Appended to ``lesions.csv`` only when the tracking used ``--tracker`` (rows with a source)."""
RESPONSE_COLUMNS: tuple[str, ...] = (
    "patient_id", "timepoint", "days", "lesions", "targets", "sod_mm",
    "change_from_baseline_pct", "change_from_nadir_pct", "nadir_mm", "new_lesions", "response",
    "reasons", "target_volume_ml", "volume_change_from_baseline_pct",
    "volume_change_from_nadir_pct", "volumetric_response", "total_volume_ml",
    "best_overall_response",
)
_POINTS = {"centroid_mm": ("centroid_x_mm", "centroid_y_mm", "centroid_z_mm"),
           "centroid_baseline_mm": ("baseline_x_mm", "baseline_y_mm", "baseline_z_mm")}
_TEXT = ("patient_id", "track_id", "organ", "merged_into")
"""Text cells the writer may have escaped for spreadsheets."""


def tracks_document(results: Sequence[PatientTracking], *,
                    settings: TrackingSettings | Mapping[str, object] | None = None,
                    input_hash: str | None = None) -> TracksDocument:
    """The ``tracks.json`` document of ``results`` (also what ``track --json`` prints)."""
    if not isinstance(settings, TrackingSettings):
        settings = TrackingSettings.model_validate(dict(settings or {}))
    return TracksDocument(medseq_version=__version__, input_hash=input_hash, settings=settings,
                          patients=list(results))


def write_outputs(results: Sequence[PatientTracking] | TracksDocument, out_dir: Path, *,
                  settings: TrackingSettings | Mapping[str, object] | None = None
                  ) -> dict[str, Path]:
    """Write ``lesions.csv``, ``response.csv`` and ``tracks.json`` atomically into ``out_dir``."""
    doc = (results if isinstance(results, TracksDocument)
           else tracks_document(results, settings=settings))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in (LESIONS_NAME, RESPONSE_NAME, TRACKS_NAME)}
    write_lesions_csv(paths[LESIONS_NAME], doc.patients)
    write_response_csv(paths[RESPONSE_NAME], doc.patients)
    write_tracks(paths[TRACKS_NAME], doc)
    return paths


# ------------------------------------------------------------------------------- lesions.csv

def write_lesions_csv(path: Path, results: Iterable[PatientTracking]) -> Path:
    """``lesions.csv``: every lesion row of every patient (``source`` and ``confidence``
    columns too when the rows carry them: a tracking made with ``--tracker``)."""
    rows = [row for result in results for row in result.lesions]
    sourced = any(row.source is not None for row in rows)
    header = [*LESION_COLUMNS, *SOURCE_COLUMNS] if sourced else list(LESION_COLUMNS)
    write_text_atomic(Path(path), csv_text([header, *(
        _lesion_cells(row) + (_source_cells(row) if sourced else []) for row in rows)]))
    return Path(path)


def read_lesions_csv(path: Path) -> list[LesionRow]:
    """The rows of a ``lesions.csv`` this medseq wrote (numbers as written: 4 decimals)."""
    out = []
    sourced = (*LESION_COLUMNS, *SOURCE_COLUMNS)
    for line, cells in _read_csv(path, LESION_COLUMNS, sourced):
        data: dict[str, object] = {key: _none_if_empty(value) for key, value in cells.items()}
        for field, columns in _POINTS.items():
            values = [data.pop(column) for column in columns]
            data[field] = None if any(v is None for v in values) else values
        data["target"] = _flag(cells["target"])
        data["nodal"] = _flag(cells["nodal"])
        out.append(validate(LesionRow, data, path=Path(path), where=f"line {line} at "))
    return out


def _lesion_cells(row: LesionRow) -> list[str]:
    centroid = row.centroid_mm or (None, None, None)
    base = row.centroid_baseline_mm or (None, None, None)
    return [row.patient_id, str(row.timepoint), str(row.days), row.track_id,
            _cell(row.lesion), row.status.value, _yes(row.target), _yes(row.nodal),
            row.organ or "", _cell(row.volume_ml), _cell(row.longest_diameter_mm),
            _cell(row.short_axis_mm), *(_cell(v) for v in centroid), *(_cell(v) for v in base),
            _cell(row.volume_change_pct), row.merged_into or ""]


def _source_cells(row: LesionRow) -> list[str]:
    return [row.source.value if row.source else "", _cell(row.confidence)]


# ------------------------------------------------------------------------------ response.csv

def write_response_csv(path: Path, results: Iterable[PatientTracking]) -> Path:
    """``response.csv``: every response row, with the patient's best overall response."""
    write_text_atomic(Path(path), csv_text([list(RESPONSE_COLUMNS), *(
        _response_cells(row, result.best_overall_response)
        for result in results for row in result.responses)]))
    return Path(path)


def read_response_csv(path: Path) -> list[ResponseCsvRow]:
    """The rows of a ``response.csv`` this medseq wrote (numbers as written: 4 decimals)."""
    out = []
    for line, cells in _read_csv(path, RESPONSE_COLUMNS):
        data: dict[str, object] = {key: _none_if_empty(value) for key, value in cells.items()}
        data["new_lesions"] = _flag(cells["new_lesions"])
        data["reasons"] = cells["reasons"].split("; ") if cells["reasons"] else []
        out.append(validate(ResponseCsvRow, data, path=Path(path), where=f"line {line} at "))
    return out


def _response_cells(row: ResponseRow, best: Response) -> list[str]:
    return [row.patient_id, str(row.timepoint), str(row.days), str(row.lesions),
            str(row.targets), _cell(row.sod_mm), _cell(row.change_from_baseline_pct),
            _cell(row.change_from_nadir_pct), _cell(row.nadir_mm), _yes(row.new_lesions),
            row.response.value if row.response else "", "; ".join(row.reasons),
            _cell(row.target_volume_ml), _cell(row.volume_change_from_baseline_pct),
            _cell(row.volume_change_from_nadir_pct),
            row.volumetric_response.value if row.volumetric_response else "",
            _cell(row.total_volume_ml), best.value]


# ------------------------------------------------------------------------------------ cells

def _cell(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _flag(text: str) -> bool:
    return text == "yes"


def _none_if_empty(text: str) -> str | None:
    return text if text else None


def _read_csv(path: Path, columns: Sequence[str], *alternatives: Sequence[str]
              ) -> Iterable[tuple[int, dict[str, str]]]:
    """(line number, cells) of each data row; text cells unescaped; the header must match
    ``columns`` (or one of ``alternatives``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise CacheError(f"cannot read ({err.strerror})", path=path) from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    columns = next((tuple(c) for c in alternatives if header is not None
                    and tuple(header) == tuple(c)), tuple(columns))
    if header is None or tuple(header) != columns:
        raise CacheError("not a medseq tracking CSV (unexpected columns); run medseq track "
                         "again", path=path)
    rows = []
    for line, cells in enumerate(reader, start=2):
        if len(cells) != len(columns):
            raise CacheError(f"line {line}: {len(cells)} cells, expected {len(columns)}",
                             path=path)
        row = dict(zip(columns, cells, strict=True))
        for key in _TEXT:
            if key in row:
                row[key] = unescape_cell(row[key])
        rows.append((line, row))
    return rows
