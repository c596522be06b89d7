"""The manifest layout: a CSV with ``patient_id,timepoint,date,image,mask[,label]``.

``image`` is a NIfTI file or a folder holding one DICOM series (the analysable series inside is
chosen as in a DICOM tree); ``mask`` is an optional NIfTI file; relative paths are relative to
the CSV. An empty ``date`` cell takes the DICOM StudyDate when the image is DICOM. A patient any
of whose rows cannot be used is skipped whole, so no baseline shifts silently.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseq.errors import InputDataError, LayoutError, NiftiError
from medseq.io.cohort import ImageFormat, Patient, SeriesInfo, SkipKind, Skipped, Timepoint
from medseq.io.nifti import check_finite, check_mask_geometry, is_nifti, read_nifti_header
from medseq.io.timeline import in_date_order, parse_date

REQUIRED_COLUMNS: tuple[str, ...] = ("patient_id", "timepoint", "date", "image", "mask")
OPTIONAL_COLUMNS: tuple[str, ...] = ("label",)


@dataclass
class ManifestResult:
    """Patients listed in a manifest, and what was left out."""

    patients: list[Patient] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Row:
    line: int
    patient_id: str
    timepoint: str
    date: str
    image: str
    mask: str
    label: str


def looks_like_manifest(path: Path) -> bool:
    """True when ``path`` is a CSV file (by name); its columns are checked when it is read."""
    return path.is_file() and path.suffix.lower() == ".csv"


def discover_manifest(path: Path, *, series: str | None = None, check_values: bool = True
                      ) -> ManifestResult:
    """Read a manifest CSV into patients (date order) and skipped rows.

    Raises:
        LayoutError: the file cannot be read or lacks a required column.
    """
    rows = _read_rows(path)
    result = ManifestResult()
    by_patient: dict[str, list[_Row]] = defaultdict(list)
    for row in rows:
        if not row.patient_id:
            result.skipped.append(Skipped(path=f"{path}:{row.line}", kind=SkipKind.ROW,
                                          reason="row has no patient_id"))
            continue
        by_patient[row.patient_id].append(row)
    for patient_id, patient_rows in by_patient.items():
        try:
            patient = _patient(path, patient_id, patient_rows, result, series=series,
                               check_values=check_values)
        except InputDataError as err:
            result.skipped.append(Skipped(path=str(err.path or path), reason=err.reason,
                                          patient_id=patient_id, kind=SkipKind.PATIENT))
            continue
        result.patients.append(patient)
    return result


def _patient(path: Path, patient_id: str, rows: list[_Row], result: ManifestResult, *,
             series: str | None, check_values: bool) -> Patient:
    names = [row.timepoint for row in rows]
    for row in rows:
        if not row.timepoint:
            raise LayoutError(f"line {row.line}: patient {patient_id} has a row without a "
                              "timepoint name", path=path)
        if names.count(row.timepoint) > 1:
            raise LayoutError(f"line {row.line}: patient {patient_id} lists timepoint "
                              f"{row.timepoint} twice", path=path)
    labels = {row.label for row in rows if row.label}
    if len(labels) > 1:
        raise LayoutError(f"patient {patient_id} has conflicting labels "
                          f"{', '.join(sorted(labels))}", path=path)
    label = None
    if labels:
        text = labels.pop()
        try:
            label = int(text)
        except ValueError:
            raise LayoutError(f"patient {patient_id}: label {text!r} is not an integer",
                              path=path) from None
    timepoints = [_timepoint(path, row, result, series=series, check_values=check_values)
                  for row in rows]
    return Patient(patient_id=patient_id, label=label,
                   timepoints=in_date_order(timepoints, patient_id=patient_id, where=path))


def _timepoint(path: Path, row: _Row, result: ManifestResult, *, series: str | None,
               check_values: bool) -> Timepoint:
    from medseq.io.dicom_grouping import choose_in_folder

    date: dt.date | None = None
    if row.date:
        date = parse_date(row.date)
        if date is None:
            raise LayoutError(f"line {row.line}: date {row.date!r} is not YYYY-MM-DD or "
                              "YYYYMMDD", path=path)
    if not row.image:
        raise LayoutError(f"line {row.line}: no image", path=path)
    image = _resolve(path, row.image)
    study_uid = None
    if image.is_dir():
        choice, skipped, warnings = choose_in_folder(image, series=series)
        result.skipped.extend(Skipped(path=s.path, reason=s.reason, patient_id=row.patient_id,
                                      kind=s.kind) for s in skipped)
        result.warnings.extend(warnings)
        info = choice.series
        study_uid = choice.study_uid
        date = date or choice.date
    elif not image.exists():
        raise LayoutError(f"line {row.line}: image {image} not found", path=path)
    elif is_nifti(image):
        header = read_nifti_header(image)
        if check_values and header.may_hold_nan:
            check_finite(image)
        info = SeriesInfo(format=ImageFormat.NIFTI, files=(image,), description=row.timepoint,
                          shape=header.shape, spacing=header.spacing,
                          affine=tuple(tuple(float(v) for v in r) for r in header.affine))
    else:
        raise LayoutError(f"line {row.line}: image {image} is neither a NIfTI file "
                          "(.nii, .nii.gz) nor a folder of DICOM files", path=path)
    mask = _mask(path, row, info)
    return Timepoint(name=row.timepoint, date=date, days=None, image=info, mask=mask,
                     study_uid=study_uid)


def _mask(path: Path, row: _Row, image: SeriesInfo) -> Path | None:
    if not row.mask:
        return None
    mask = _resolve(path, row.mask)
    if not mask.is_file():
        raise LayoutError(f"line {row.line}: mask {mask} not found", path=path)
    if not is_nifti(mask):
        raise NiftiError("mask must be a NIfTI file (.nii or .nii.gz)", path=mask)
    header = read_nifti_header(mask)
    if image.shape is not None and image.affine is not None:
        check_mask_geometry(header.shape, header.affine, image_shape=image.shape,
                            image_affine=_matrix(image.affine), mask_path=mask)
    return mask


def _read_rows(path: Path) -> list[_Row]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [(c or "").strip().lower() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise LayoutError(
                    f"manifest needs columns {','.join(REQUIRED_COLUMNS)}[,label]; missing "
                    f"{','.join(missing)} (found {','.join(columns) or 'none'})", path=path)
            rows = []
            for raw in reader:
                cells = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()
                         if isinstance(v, str) or v is None}
                rows.append(_Row(line=reader.line_num, patient_id=cells.get("patient_id", ""),
                                 timepoint=cells.get("timepoint", ""),
                                 date=cells.get("date", ""), image=cells.get("image", ""),
                                 mask=cells.get("mask", ""), label=cells.get("label", "")))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise LayoutError(f"cannot read the manifest ({' '.join(str(err).split())})",
                          path=path) from None
    if not rows:
        raise LayoutError("manifest lists no rows", path=path)
    return rows


def _resolve(manifest: Path, cell: str) -> Path:
    target = Path(cell).expanduser()
    return target if target.is_absolute() else manifest.parent / target


def _matrix(rows: tuple[tuple[float, ...], ...]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64)
