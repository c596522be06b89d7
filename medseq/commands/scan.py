"""``medseq scan``: what medseq finds under a path, before anything is processed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from medseq.commands._common import reports_errors

if TYPE_CHECKING:
    from medseq.io.cohort import Cohort, Timepoint

SCHEMA_VERSION = 1
"""Version of the ``--json`` document (docs/scan.md); bumped only on incompatible changes."""


@reports_errors
def command(
    path: Path = typer.Argument(..., metavar="PATH", help="DICOM folder, DICOMDIR, NIfTI "
                                "layout folder or manifest CSV."),
    json_output: bool = typer.Option(False, "--json", help="Write the JSON document "
                                     "(docs/scan.md) to stdout instead of tables."),
    series: str | None = typer.Option(
        None, "--series", metavar="REGEX",
        help="Choose each study's DICOM series by a regular expression on SeriesDescription "
             "(case-insensitive) instead of the series with the most slices."),
    roi: str | None = typer.Option(
        None, "--roi", metavar="REGEX",
        help="Show which segments/ROIs of SEG/RTSTRUCT masks this --roi selects "
             "(case-insensitive on SegmentLabel/ROIName; default all)."),
) -> None:
    """Show the layout, patients, timepoints and chosen series found under PATH (headers only).

    Lists every skipped file, series or patient with its reason. Exits 2 when no patient
    can be used.

    Example: medseq scan /data/export --series "AXIAL.*1\\.0" --json > scan.json
    """
    from medseq.console import emit_json
    from medseq.io.discover import discover, require_usable
    from medseq.progress import ProgressBar

    pattern = _roi_pattern(roi)
    with ProgressBar("reading headers", unit="files", transient=True) as bar:
        cohort = discover(path, series=series, require_patients=False, progress=bar.update)
    if json_output:
        emit_json(scan_document(cohort, roi=pattern))
    else:
        _print_tables(cohort, roi=pattern)
    require_usable(cohort)


def scan_document(cohort: Cohort, *, roi: re.Pattern[str] | None = None) -> dict[str, Any]:
    """The ``--json`` document: stable keys, documented in docs/scan.md."""
    from medseq import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "medseq_version": __version__,
        "root": str(cohort.root),
        "layout": cohort.layout.value,
        "summary": {
            "patients": len(cohort.patients),
            "timepoints": sum(len(p.timepoints) for p in cohort.patients),
            "skipped": len(cohort.skipped),
            "warnings": len(cohort.warnings),
        },
        "patients": [
            {
                "patient_id": patient.patient_id,
                "label": patient.label,
                "timepoints": [_timepoint(tp, roi) for tp in patient.timepoints],
            }
            for patient in cohort.patients
        ],
        "skipped": [{"path": s.path, "kind": s.kind.value, "patient_id": s.patient_id,
                     "reason": s.reason} for s in cohort.skipped],
        "warnings": list(cohort.warnings),
    }


def _timepoint(tp: Timepoint, roi: re.Pattern[str] | None = None) -> dict[str, Any]:
    image = tp.image
    files = image.files
    return {
        "name": tp.name,
        "date": tp.date.isoformat() if tp.date else None,
        "days": tp.days,
        "study_uid": tp.study_uid,
        "image": {
            "format": image.format.value,
            "path": str(files[0] if len(files) == 1 else _folder(files)),
            "file_count": image.file_count,
            "series_uid": image.series_uid,
            "description": image.description,
            "modality": image.modality or None,
            "shape": list(image.shape) if image.shape else None,
            "spacing": [round(v, 6) for v in image.spacing] if image.spacing else None,
            "affine": [[round(v, 6) for v in row] for row in image.affine]
            if image.affine else None,
        },
        "mask": str(tp.mask) if tp.mask else None,
        "mask_source": tp.mask_source.value,
        "mask_rois": _mask_rois(tp, roi),
    }


def _roi_pattern(roi: str | None) -> re.Pattern[str] | None:
    if roi is None:
        return None
    from medseq.dicom_objects.labels import compile_roi_pattern

    return compile_roi_pattern(roi)


def _mask_rois(tp: Timepoint, roi: re.Pattern[str] | None) -> list[str] | None:
    """Segment labels / ROI names of a SEG or RTSTRUCT mask that ``roi`` selects (None for
    NIfTI masks and none)."""
    if tp.mask is None or not tp.mask_source.is_dicom_object:
        return None
    from medseq.dicom_objects.attach import read_annotation_object

    obj = read_annotation_object(tp.mask)
    names = obj.names if obj is not None else ()
    return [name for name in names if roi is None or roi.search(name)]


def _mask_cell(tp: Timepoint, roi: re.Pattern[str] | None) -> str:
    """``seg.dcm (SEG: Lesion 1, Lesion 2)``; ``none selected`` when --roi matches nothing."""
    if tp.mask is None:
        return "-"
    if not tp.mask_source.is_dicom_object:
        return f"{_esc(tp.mask.name)} (NIfTI)"
    rois = _mask_rois(tp, roi) or []
    chosen = ", ".join(rois) if rois else "none selected"
    return f"{_esc(tp.mask.name)} ({tp.mask_source.value}: {_esc(chosen)})"


def _print_tables(cohort: Cohort, *, roi: re.Pattern[str] | None = None) -> None:
    from rich.table import Table

    from medseq.console import stdout_console

    out = stdout_console()
    if not out.is_terminal:
        out.width = max(out.width, 160)  # piped to a file or pager: no need to fold columns
    timepoints = sum(len(p.timepoints) for p in cohort.patients)
    out.print(f"layout: {cohort.layout.value}  root: {cohort.root}  patients: "
              f"{len(cohort.patients)}  timepoints: {timepoints}  skipped: {len(cohort.skipped)}",
              markup=False)
    if cohort.patients:
        table = Table(title="Patients and timepoints (date order)", title_justify="left")
        for column in ("patient", "timepoint", "date", "days", "modality", "series",
                       "series UID", "shape", "spacing (mm)", "axes", "files", "mask"):
            table.add_column(column, overflow="fold")
        for patient in cohort.patients:
            for n, tp in enumerate(patient.timepoints):
                image = tp.image
                name = patient.patient_id if n == 0 else ""
                if n == 0 and patient.label is not None:
                    name += f" (label {patient.label})"
                table.add_row(
                    _esc(name), _esc(tp.name), tp.date.isoformat() if tp.date else "-",
                    "-" if tp.days is None else str(tp.days), image.modality or "-",
                    _esc(image.description) or "-", _short_uid(image.series_uid) or "-",
                    "x".join(str(n) for n in image.shape) if image.shape else "-",
                    " x ".join(f"{v:.3g}" for v in image.spacing) if image.spacing else "-",
                    _axes(image.affine), str(image.file_count),
                    _mask_cell(tp, roi),
                )
        out.print(table)
    if cohort.skipped:
        skipped = Table(title="Skipped", title_justify="left")
        skipped.add_column("path", overflow="fold")
        skipped.add_column("kind")
        skipped.add_column("patient")
        skipped.add_column("reason", overflow="fold")
        for item in cohort.skipped:
            skipped.add_row(_esc(item.path), item.kind.value, _esc(item.patient_id or "-"),
                            _esc(item.reason))
        out.print(skipped)
    for warning in cohort.warnings:
        out.print(f"warning: {warning}", markup=False)


def _axes(affine: tuple[tuple[float, ...], ...] | None) -> str:
    """Orientation codes (``RAS``, ``LPS``...) of the voxel axes; the full affine is in --json.

    ``nibabel.aff2axcodes`` (its ``io_orientation``), without importing nibabel (most of a
    second): the closest world axis of each voxel axis after removing zooms and shears.
    """
    if affine is None:
        return "-"
    import numpy as np

    rzs = np.asarray(affine, dtype=np.float64)[:3, :3]
    zooms = np.sqrt(np.sum(rzs * rzs, axis=0))
    zooms[zooms == 0] = 1
    rs = rzs / zooms
    p, s, qs = np.linalg.svd(rs, full_matrices=False)
    keep = s > s.max() * max(rs.shape) * np.finfo(s.dtype).eps
    r = np.dot(p[:, keep], qs[keep])
    codes = ["?"] * 3  # (an axis nibabel leaves undecided: never for a placed series)
    for in_axis in np.argsort(np.min(-(r**2), axis=0), kind="stable"):
        column = r[:, in_axis]
        if np.allclose(column, 0):
            continue
        out_axis = int(np.argmax(np.abs(column)))
        codes[in_axis] = ("LR", "PA", "IS")[out_axis][0 if column[out_axis] < 0 else 1]
        r[out_axis, :] = 0
    return "".join(codes)


def _folder(files: tuple[Path, ...]) -> Path:
    import os

    try:
        return Path(os.path.commonpath([str(f.parent) for f in files]))
    except ValueError:
        return files[0].parent


def _short_uid(uid: str | None) -> str:
    return f"…{uid[-12:]}" if uid and len(uid) > 14 else (uid or "")


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
