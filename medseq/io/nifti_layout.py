"""The NIfTI layout: ``patient/<timepoint>/image.nii.gz`` with an optional ``mask.nii.gz``.

Dates come from ``patient/timepoints.csv`` (columns ``timepoint,date``) or from an ISO date in
the timepoint folder's name. Labels, when present, come from ``labels.csv`` (``patient_id,label``)
at the top of the layout. A patient any of whose timepoints cannot be used is skipped whole:
dropping one scan would silently shift the baseline and every later day count.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from medseq.errors import InputDataError, LayoutError, NiftiError
from medseq.io.cohort import ImageFormat, Patient, SeriesInfo, SkipKind, Skipped, Timepoint
from medseq.io.nifti import (
    check_finite,
    check_mask_geometry,
    read_nifti_header,
)
from medseq.io.timeline import date_in_name, in_date_order, parse_date

IMAGE_NAMES: tuple[str, ...] = ("image.nii.gz", "image.nii")
MASK_NAMES: tuple[str, ...] = ("mask.nii.gz", "mask.nii")
TIMEPOINTS_CSV = "timepoints.csv"
LABELS_CSV = "labels.csv"


@dataclass
class NiftiLayoutResult:
    """Patients found, and what was left out."""

    patients: list[Patient] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def patient_folders(root: Path) -> list[Path] | None:
    """The patient folders if ``root`` holds the NIfTI layout, else ``None``.

    ``root/<patient>/<timepoint>/image.nii.gz`` gives one folder per patient; a single patient
    folder (``root/<timepoint>/image.nii.gz``) is accepted too.
    """
    children = _subfolders(root)
    patients = [child for child in children if any(_has_image(tp) for tp in _subfolders(child))]
    if patients:
        return patients
    if any(_has_image(child) for child in children):
        return [root]
    return None


def discover_nifti(root: Path, *, check_values: bool = True) -> NiftiLayoutResult:
    """Read the NIfTI layout under ``root`` (headers, plus voxels of float images for NaN).

    Args:
        root: The layout's top folder (or one patient's folder).
        check_values: Read float images to refuse NaN/infinity now rather than at load time.
    """
    result = NiftiLayoutResult()
    folders = patient_folders(root) or []
    labels = _read_labels(root / LABELS_CSV, result) if folders != [root] else {}
    for folder in folders:
        patient_id = folder.name
        try:
            timepoints = _patient_timepoints(folder, result, check_values=check_values)
        except InputDataError as err:
            result.skipped.append(Skipped(path=str(err.path or folder), reason=err.reason,
                                          patient_id=patient_id, kind=SkipKind.PATIENT))
            continue
        result.patients.append(Patient(patient_id=patient_id, timepoints=timepoints,
                                       label=labels.get(patient_id)))
    if folders != [root]:
        for other in sorted(set(_subfolders(root)) - set(folders)):
            result.skipped.append(Skipped(
                path=str(other), kind=SkipKind.FOLDER,
                reason="holds no <timepoint>/image.nii.gz: not a patient of the NIfTI layout"))
    folder_names = {folder.name for folder in folders}
    for patient_id in sorted(set(labels) - folder_names):
        result.warnings.append(f"{LABELS_CSV}: patient {patient_id} has a label but no folder")
    return result


def _patient_timepoints(folder: Path, result: NiftiLayoutResult, *, check_values: bool
                        ) -> tuple[Timepoint, ...]:
    patient_id = folder.name
    dates = _read_timepoint_dates(folder / TIMEPOINTS_CSV)
    timepoints: list[Timepoint] = []
    for tp_folder in sorted(_subfolders(folder), key=lambda p: _natural_key(p.name)):
        image = _image_file(tp_folder)
        if image is None:
            result.skipped.append(Skipped(
                path=str(tp_folder), patient_id=patient_id, kind=SkipKind.FOLDER,
                reason="folder holds no image.nii.gz or image.nii: not a timepoint"))
            continue
        series, mask = _timepoint_files(tp_folder, image, check_values=check_values)
        if dates is not None:
            date = dates.pop(tp_folder.name, None)
        else:
            date = date_in_name(tp_folder.name)
        timepoints.append(Timepoint(name=tp_folder.name, date=date, days=None, image=series,
                                    mask=mask))
    for name in sorted(dates or {}):
        result.warnings.append(
            f"{folder / TIMEPOINTS_CSV}: timepoint {name} has a date but no folder")
    if not timepoints:
        raise LayoutError(f"patient {patient_id}: no timepoint folder holds image.nii.gz",
                          path=folder)
    if all(tp.date is None for tp in timepoints) and len(timepoints) > 1:
        result.warnings.append(
            f"patient {patient_id}: no dates (no {TIMEPOINTS_CSV}, no ISO date in folder "
            "names); timepoints ordered by folder name, days from baseline unknown")
    return in_date_order(timepoints, patient_id=patient_id, where=folder)


def _timepoint_files(tp_folder: Path, image: Path, *, check_values: bool
                     ) -> tuple[SeriesInfo, Path | None]:
    header = read_nifti_header(image)
    if check_values and header.may_hold_nan:
        check_finite(image)
    mask = _mask_file(tp_folder)
    if mask is not None:
        mask_header = read_nifti_header(mask)
        check_mask_geometry(mask_header.shape, mask_header.affine, image_shape=header.shape,
                            image_affine=header.affine, mask_path=mask)
    series = SeriesInfo(
        format=ImageFormat.NIFTI, files=(image,), description=tp_folder.name,
        shape=header.shape, spacing=header.spacing,
        affine=tuple(tuple(float(v) for v in row) for row in header.affine),
    )
    return series, mask


def _read_timepoint_dates(path: Path) -> dict[str, dt.date] | None:
    """``timepoint -> date`` from ``timepoints.csv``, or ``None`` when the file is absent."""
    if not path.is_file():
        return None
    rows = _read_csv(path, required=("timepoint", "date"))
    dates: dict[str, dt.date] = {}
    for line, row in rows:
        name = (row.get("timepoint") or "").strip()
        date = parse_date(row.get("date") or "")
        if not name:
            continue
        if date is None:
            raise LayoutError(f"line {line}: date {row.get('date')!r} of timepoint {name} is "
                              "not YYYY-MM-DD or YYYYMMDD", path=path)
        if name in dates:
            raise LayoutError(f"line {line}: timepoint {name} is listed twice", path=path)
        dates[name] = date
    return dates


def _read_labels(path: Path, result: NiftiLayoutResult) -> dict[str, int]:
    if not path.is_file():
        return {}
    labels: dict[str, int] = {}
    for line, row in _read_csv(path, required=("patient_id", "label")):
        patient_id = (row.get("patient_id") or "").strip()
        text = (row.get("label") or "").strip()
        try:
            labels[patient_id] = int(text)
        except ValueError:
            result.warnings.append(f"{path}: line {line}: label {text!r} of patient "
                                   f"{patient_id} is not an integer; ignored")
    return labels


def _read_csv(path: Path, *, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a small UTF-8 CSV with (line number, row); checks the required columns."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in required if c not in columns]
            if missing:
                raise LayoutError(f"needs columns {','.join(required)}; missing "
                                  f"{','.join(missing)} (found {','.join(columns) or 'none'})",
                                  path=path)
            return [(reader.line_num, {(k or "").strip(): v or "" for k, v in row.items()})
                    for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise LayoutError(f"cannot read CSV ({' '.join(str(err).split())})", path=path) from None


def _has_image(folder: Path) -> bool:
    return any((folder / name).is_file() for name in IMAGE_NAMES)


def _image_file(folder: Path) -> Path | None:
    found = [folder / name for name in IMAGE_NAMES if (folder / name).is_file()]
    if len(found) > 1:
        raise NiftiError("both image.nii.gz and image.nii are present; keep one", path=folder)
    return found[0] if found else None


def _mask_file(folder: Path) -> Path | None:
    found = [folder / name for name in MASK_NAMES if (folder / name).is_file()]
    if len(found) > 1:
        raise NiftiError("both mask.nii.gz and mask.nii are present; keep one", path=folder)
    return found[0] if found else None


def _subfolders(folder: Path) -> list[Path]:
    # DirEntry.is_dir uses the type the folder listing already gives: no stat per entry.
    try:
        with os.scandir(folder) as entries:
            return sorted(Path(e.path) for e in entries
                          if not e.name.startswith(".") and e.is_dir())
    except OSError:
        return []


def _natural_key(name: str) -> list[object]:
    """``tp2`` before ``tp10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]
