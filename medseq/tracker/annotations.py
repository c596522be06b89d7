"""Baseline annotations without a mask: a lesion list CSV of points or RECIST lines.

One header row, then one row per lesion:

``patient_id,timepoint,lesion,x_mm,y_mm,z_mm[,long_axis_mm][,frame]`` (a point), or
``patient_id,timepoint,lesion,x1,y1,z1,x2,y2,z2[,frame]`` (the endpoints of a RECIST line).

A file may mix both kinds of row (columns of the other kind left empty). Coordinates are in mm
on that timepoint's own scan, in scanner **RAS+** (medseq's convention, what ``lesions.csv``
reports) unless the row's ``frame`` column says ``LPS`` (DICOM patient coordinates: x and y
negated). ``timepoint`` is the index (0 = baseline, ``t00`` also accepted); ``lesion`` any
name unique within the patient and timepoint. :func:`read_annotations` checks the syntax;
:func:`resolve_annotations` checks each row against a cache (patient, timepoint, point inside
the scan and the body) and carries it into the registered (baseline) frame.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseq.errors import InputDataError

POINT_COLUMNS = ("x_mm", "y_mm", "z_mm")
LINE_COLUMNS = ("x1", "y1", "z1", "x2", "y2", "z2")
FRAMES = ("RAS", "LPS")
MIN_LINE_MM = 1e-3
"""A RECIST line shorter than this has zero length."""
BODY_HU = -500.0
"""Voxels above this (CT) are tissue; the body is that, with enclosed air (lungs) filled in."""


@dataclass(frozen=True)
class Annotation:
    """One row: a lesion marked by a point (with an optional long axis) or a RECIST line."""

    patient_id: str
    timepoint: int
    lesion: str
    point_mm: tuple[float, float, float]
    """The point, or the line's midpoint, in scanner RAS+ mm of this timepoint's scan."""
    line_mm: tuple[tuple[float, float, float], tuple[float, float, float]] | None
    """The RECIST line's endpoints (RAS+ mm), or None for a point."""
    long_axis_mm: float | None
    line: int
    """Line number in the CSV, for error messages."""


@dataclass(frozen=True)
class Prompt:
    """An annotation in a cache's registered (baseline) frame, ready for the tracker."""

    lesion: str
    point_mm: np.ndarray
    """Registered-frame RAS+ mm (the baseline's own scanner frame)."""
    line_mm: np.ndarray | None
    """[2, 3] endpoints in the registered frame, or None."""
    long_axis_mm: float | None
    line: int


def read_annotations(path: Path) -> list[Annotation]:
    """Parse the CSV (syntax only; see :func:`resolve_annotations` for the cache checks).

    Raises:
        InputDataError: unreadable file, missing columns, a malformed row or a zero-length
            line; the message names the file and the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise InputDataError(f"cannot read annotations ({err.strerror or err})",
                             path=path) from None
    reader = csv.DictReader(text.splitlines())
    fields = {(name or "").strip().lower() for name in reader.fieldnames or []}
    missing = {"patient_id", "timepoint", "lesion"} - fields
    if missing:
        raise InputDataError(f"annotations need the columns {', '.join(sorted(missing))} "
                             "(header row: patient_id,timepoint,lesion,x_mm,y_mm,z_mm)",
                             path=path)
    if not set(POINT_COLUMNS) <= fields and not set(LINE_COLUMNS) <= fields:
        raise InputDataError("annotations need x_mm,y_mm,z_mm (a point) or x1,y1,z1,x2,y2,z2 "
                             "(a RECIST line) columns", path=path)
    rows: list[Annotation] = []
    seen: dict[tuple[str, int, str], int] = {}
    for number, raw in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()
               if not isinstance(v, list)}
        if not any(row.values()):
            continue
        annotation = _parse_row(row, number, path)
        key = (annotation.patient_id, annotation.timepoint, annotation.lesion)
        if key in seen:
            raise InputDataError(f"line {number}: lesion {annotation.lesion!r} already given on "
                                 f"line {seen[key]}", path=path)
        seen[key] = number
        rows.append(annotation)
    if not rows:
        raise InputDataError("annotations hold no rows", path=path)
    return rows


def _parse_row(row: dict[str, str], line: int, path: Path) -> Annotation:
    def fail(reason: str) -> InputDataError:
        return InputDataError(f"line {line}: {reason}", path=path)

    patient = row.get("patient_id", "")
    if not patient:
        raise fail("empty patient_id")
    try:
        timepoint = int(row.get("timepoint", "").lower().lstrip("t"))
    except ValueError:
        raise fail(f"timepoint {row.get('timepoint')!r} is not an index like 0 or t00") from None
    lesion = row.get("lesion", "")
    if not lesion:
        raise fail("empty lesion name")
    frame = (row.get("frame") or "RAS").upper()
    if frame not in FRAMES:
        raise fail(f"frame {row.get('frame')!r} is not RAS or LPS")
    flip = np.array([-1.0, -1.0, 1.0]) if frame == "LPS" else np.ones(3)
    has_line = any(row.get(c) for c in LINE_COLUMNS)
    has_point = any(row.get(c) for c in POINT_COLUMNS)
    if has_line == has_point:
        raise fail("give either x_mm,y_mm,z_mm (a point) or x1..z2 (a RECIST line), not both "
                   "or neither")
    columns = LINE_COLUMNS if has_line else POINT_COLUMNS
    try:
        values = np.array([float(row.get(c, "")) for c in columns])
    except ValueError:
        raise fail(f"{', '.join(columns)} must all be numbers (mm)") from None
    if not np.all(np.isfinite(values)):
        raise fail("coordinates must be finite numbers")
    long_axis: float | None = None
    line_mm = None
    if has_line:
        a, b = values[:3] * flip, values[3:] * flip
        length = float(np.linalg.norm(b - a))
        if length < MIN_LINE_MM:
            raise fail("the RECIST line has zero length (both endpoints are the same point)")
        point = (a + b) / 2
        long_axis = length
        line_mm = (_triple(a), _triple(b))
    else:
        point = values * flip
        if row.get("long_axis_mm"):
            try:
                long_axis = float(row["long_axis_mm"])
            except ValueError:
                raise fail(f"long_axis_mm {row['long_axis_mm']!r} is not a number") from None
            if not np.isfinite(long_axis) or long_axis <= 0:
                raise fail("long_axis_mm must be a positive number of mm")
    return Annotation(patient_id=patient, timepoint=timepoint, lesion=lesion,
                      point_mm=_triple(point), line_mm=line_mm, long_axis_mm=long_axis,
                      line=line)


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])


def resolve_annotations(path: Path, annotations: list[Annotation], cache_dir: Path
                        ) -> dict[str, list[Prompt]]:
    """Check every row against the cache and carry it into the registered frame.

    Original patient ids are accepted when the cache holds its pseudonym key. Only baseline
    rows (timepoint 0) are prompts: the tracker propagates baseline lesions to the follow-ups.

    Raises:
        InputDataError: a row names a patient or timepoint the cache does not hold, a
            follow-up (annotations are read at the baseline), or a point or line outside the
            scan or outside the body; the message names the file and the line.
    """
    from medseq.contracts.cache import read_manifest
    from medseq.io.nifti import load_nifti
    from medseq.preprocess.pseudonym import pseudonym, read_salt

    manifest = read_manifest(cache_dir)
    key = read_salt(cache_dir)
    out: dict[str, list[Prompt]] = {}
    bodies: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for row in annotations:
        def fail(reason: str, row: Annotation = row) -> InputDataError:
            return InputDataError(f"line {row.line}: {reason}", path=path)

        pid = row.patient_id
        if pid not in manifest.patients and key is not None:
            pid = pseudonym(row.patient_id, key)
        record = manifest.patients.get(pid)
        if record is None or record.status != "ok":
            why = "is not in the cache" if record is None else "failed preprocessing"
            raise fail(f"patient {row.patient_id} {why}")
        by_index = {tp.index: tp for tp in record.timepoints}
        if row.timepoint not in by_index:
            raise fail(f"patient {row.patient_id} has no timepoint {row.timepoint} "
                       f"(it has {', '.join(str(i) for i in sorted(by_index))})")
        if row.timepoint != min(by_index):
            raise fail(f"timepoint {row.timepoint} is a follow-up; annotations are read at the "
                       "baseline (timepoint 0) only")
        tp = by_index[row.timepoint]
        if pid not in bodies:
            volume = load_nifti(Path(cache_dir) / tp.image)
            bodies[pid] = (body_mask(volume.array), volume.affine)
        body, affine = bodies[pid]
        to_grid = np.asarray(tp.transform_to_baseline, dtype=np.float64)
        points = [np.asarray(row.point_mm)] if row.line_mm is None else [
            np.asarray(p) for p in row.line_mm]
        moved = [to_grid[:3, :3] @ p + to_grid[:3, 3] for p in points]
        for p in moved:
            voxel = np.rint(np.linalg.inv(affine)[:3, :3] @ p + np.linalg.inv(affine)[:3, 3])
            index = tuple(int(v) for v in voxel)
            if not all(0 <= v < n for v, n in zip(index, body.shape, strict=True)):
                raise fail(f"point ({_fmt(p)}) mm is outside the scan of patient "
                           f"{row.patient_id} at timepoint {row.timepoint}")
            if not body[index]:
                raise fail(f"point ({_fmt(p)}) mm is outside the body (air) on the scan of "
                           f"patient {row.patient_id} at timepoint {row.timepoint}")
        centre = np.mean(moved, axis=0)
        line_arr = np.stack(moved) if row.line_mm is not None else None
        out.setdefault(pid, []).append(Prompt(lesion=row.lesion, point_mm=centre,
                                              line_mm=line_arr, long_axis_mm=row.long_axis_mm,
                                              line=row.line))
    return out


def body_mask(image: np.ndarray, *, threshold: float = BODY_HU) -> np.ndarray:
    """Tissue above ``threshold``, with air enclosed in an axial slice (lungs, bowel) filled."""
    from scipy import ndimage

    from medseq.preprocess.normalize import _otsu

    image = np.asarray(image)
    if image.size and float(image.min()) >= threshold:  # not CT: no air-like values
        threshold = _otsu(image[::2, ::2, ::2].ravel().astype(np.float32))
    tissue = image > threshold
    filled = np.zeros_like(tissue)
    for k in range(tissue.shape[2]):
        filled[:, :, k] = ndimage.binary_fill_holes(tissue[:, :, k])
    return filled


def _fmt(point: np.ndarray) -> str:
    return ", ".join(f"{v:.1f}" for v in point)
