"""Header-only geometry of one DICOM series: slice order, validation and the RAS+ affine.

Slices are ordered by ImagePositionPatient projected on the slice normal (the cross product of
the ImageOrientationPatient row and column cosines), never by InstanceNumber or file name. A
series is accepted only when it forms one regular stack; anything else raises a
:class:`~medseq.errors.DicomError` whose one-line message names the series and the reason.
DICOM's LPS coordinates are converted to RAS+ here, once.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseq.errors import DicomError

__all__ = ["SeriesGeometry", "SliceHeader", "series_geometry", "slice_headers"]

ORIENTATION_TOLERANCE = 1e-3
"""Largest difference between direction cosines still counted as one orientation."""
SAME_POSITION_MM = 0.01
"""Slices closer than this along every axis sit at one position (duplicates or a conflict)."""
UNEVEN_TOLERANCE = 0.01
"""Relative deviation of one slice step from the median step still counted as even."""
UNEVEN_FLOOR_MM = 0.01
"""Absolute deviation always tolerated, for positions rounded to a few decimals."""
GAP_FACTOR = 1.5
"""A step longer than this times the median step means slices are missing."""
SHEAR_DRIFT_MM = 0.01
"""In-plane drift over the whole stack above which the stack counts as sheared (gantry tilt)."""
ACQUISITION_KEYWORDS = ("AcquisitionNumber", "EchoNumbers", "TemporalPositionIdentifier",
                        "TriggerTime", "DiffusionBValue")
"""Header fields that, when they differ between slices at one position, mean 4D or multi-echo."""


@dataclass(frozen=True)
class SeriesGeometry:
    """Where every slice of a series goes, derived from headers only.

    Indices count slices: for single-frame files they are indices into the given headers; for
    multi-frame files they count frames, file after file (``sources`` maps them back).
    """

    order: tuple[int, ...]
    """Slice indices in spatial order (increasing along the normal), duplicates removed."""
    duplicates: tuple[int, ...]
    """Slice indices dropped because another slice sits at the same position."""
    affine: np.ndarray
    """4x4 voxel (i, j, k) -> RAS+ mm, NIfTI convention."""
    shape: tuple[int, int, int]
    """``(columns, rows, slices)``: the shape of ``Volume.array``."""
    spacing: tuple[float, float, float]
    """Voxel size in mm along i, j, k."""
    tilt_degrees: float = 0.0
    """Gantry tilt (stack shear) found; 0 for ordinary series."""
    duplicate_of: tuple[int, ...] = ()
    """For each entry of ``duplicates``, the kept slice at the same position."""
    sources: tuple[tuple[int, int], ...] = ()
    """For every slice index, ``(header index, frame index)``."""
    shear_pixels: tuple[float, float] = (0.0, 0.0)
    """In-plane shift, in pixels along (i, j) per slice, that resampling a tilted stack undoes."""


@dataclass(frozen=True)
class SliceHeader:
    """The geometric fields of one slice (one file, or one frame of a multi-frame file)."""

    source: int
    frame: int
    label: str
    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]
    rows: int
    columns: int
    acquisition: tuple[Any, ...]
    sop_instance_uid: str
    thickness: float | None = None


def series_geometry(headers: Sequence[Any], *, name: str) -> SeriesGeometry:
    """Validate a series from its headers and compute slice order and affine.

    Args:
        headers: One header per file, in any order: a pydicom Dataset (pixels not needed) or
            a plain-value record with ``get``, ``in`` and ``filename`` such as
            :class:`medseq.io.header_record.HeaderRecord`.
        name: The series as users know it (a folder or UID), used in error messages.

    Raises:
        DicomError: Missing geometry tags, mixed orientations or sizes, a missing slice,
            uneven spacing, slices at one position from different acquisitions.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about odd values as it converts them
        slices = slice_headers(headers, name=name)
    if not slices:
        raise DicomError("no image slices in the series", path=name)
    first = slices[0]
    _check_uniform(slices, name=name)
    row, col = first.orientation[:3], first.orientation[3:]
    normal = np.cross(row, col)
    depth = np.array([s.position @ normal for s in slices])
    sorted_idx = sorted(range(len(slices)), key=lambda n: (depth[n], n))
    order, duplicates, duplicate_of = _remove_duplicates(slices, sorted_idx, normal, name=name)
    dy, dx = first.pixel_spacing
    positions = np.array([slices[n].position for n in order])
    step, shear = _stack_step(slices, order, depth, normal, row, col, dx=dx, dy=dy, name=name)
    tilt = math.degrees(math.atan(math.hypot(*shear))) if shear != (0.0, 0.0) else 0.0
    if shear != (0.0, 0.0):
        shear = (shear[0] * step / dx, shear[1] * step / dy)
    affine = np.eye(4)
    affine[:3, 0] = row * dx
    affine[:3, 1] = col * dy
    affine[:3, 2] = normal * step
    affine[:3, 3] = positions[0]
    affine[:2, :] *= -1.0  # LPS -> RAS+
    return SeriesGeometry(
        order=tuple(order),
        duplicates=tuple(duplicates),
        affine=affine,
        shape=(first.columns, first.rows, len(order)),
        spacing=(float(dx), float(dy), float(step)),
        tilt_degrees=tilt,
        duplicate_of=tuple(duplicate_of),
        sources=tuple((s.source, s.frame) for s in slices),
        shear_pixels=shear,
    )


def slice_headers(headers: Sequence[Any], *, name: str) -> list[SliceHeader]:
    """One :class:`SliceHeader` per slice: per file, or per frame of enhanced multi-frame files."""
    out: list[SliceHeader] = []
    for index, ds in enumerate(headers):
        label = _label(ds, index)
        frames = _int(ds.get("NumberOfFrames"), default=1)
        if "PerFrameFunctionalGroupsSequence" in ds:
            out.extend(_enhanced_slices(ds, index, label, frames, name=name))
        elif frames > 1:
            raise DicomError(f"{label} is a multi-frame image without per-frame positions "
                             "(PerFrameFunctionalGroupsSequence); cannot place its frames",
                             path=name)
        else:
            out.append(_make_slice(ds, ds, ds, index=index, frame=0, label=label, name=name))
    return out


def _enhanced_slices(ds: Any, index: int, label: str, frames: int, *, name: str
                     ) -> list[SliceHeader]:
    per_frame = ds.PerFrameFunctionalGroupsSequence
    if len(per_frame) != frames:
        raise DicomError(f"{label} has {frames} frames but {len(per_frame)} per-frame "
                         "functional groups", path=name)
    shared = ds.SharedFunctionalGroupsSequence[0] if ds.get(
        "SharedFunctionalGroupsSequence") else None
    out = []
    for f, item in enumerate(per_frame):
        groups = [g for g in (item, shared) if g is not None]
        position = _from_groups(groups, "PlanePositionSequence")
        orient = _from_groups(groups, "PlaneOrientationSequence")
        measures = _from_groups(groups, "PixelMeasuresSequence")
        content = _from_groups(groups, "FrameContentSequence")
        acquisition = (
            (content.get("TemporalPositionIndex"), content.get("StackID"))
            if content is not None else ())
        out.append(_make_slice(position, orient, measures, index=index, frame=f,
                               label=f"{label} frame {f + 1}", name=name, rows_ds=ds,
                               acquisition=acquisition))
    return out


def _from_groups(groups: list[Any], keyword: str) -> Any:
    for group in groups:
        seq = group.get(keyword)
        if seq:
            return seq[0]
    return None


def _make_slice(position_ds: Any, orient_ds: Any, measures_ds: Any, *, index: int, frame: int,
                label: str, name: str, rows_ds: Any = None,
                acquisition: tuple[Any, ...] | None = None) -> SliceHeader:
    rows_ds = position_ds if rows_ds is None else rows_ds
    position = _floats(position_ds, "ImagePositionPatient", 3, label=label, name=name)
    orientation = _floats(orient_ds, "ImageOrientationPatient", 6, label=label, name=name)
    spacing = _floats(measures_ds, "PixelSpacing", 2, label=label, name=name)
    row, col = orientation[:3], orientation[3:]
    nr, nc = np.linalg.norm(row), np.linalg.norm(col)
    if (abs(nr - 1) > 0.01 or abs(nc - 1) > 0.01
            or abs(float(row @ col)) > 0.01):
        raise DicomError(f"{label} has an invalid ImageOrientationPatient "
                         f"{_fmt(orientation)} (cosines not orthonormal)", path=name)
    orientation = np.concatenate([row / nr, col / nc])
    if np.any(spacing <= 0):
        raise DicomError(f"{label} has a non-positive PixelSpacing {_fmt(spacing)}", path=name)
    rows, columns = _int(rows_ds.get("Rows"), 0), _int(rows_ds.get("Columns"), 0)
    if rows <= 0 or columns <= 0:
        raise DicomError(f"{label} has no Rows/Columns", path=name)
    if acquisition is None:
        acquisition = tuple(_hashable(rows_ds.get(k)) for k in ACQUISITION_KEYWORDS)
    thickness = None
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = measures_ds.get(keyword) if measures_ds is not None else None
        if value not in (None, "") and thickness is None:
            try:
                thickness = abs(float(value)) or None
            except (TypeError, ValueError):
                thickness = None
    return SliceHeader(source=index, frame=frame, label=label, position=position,
                       orientation=orientation,
                       pixel_spacing=(float(spacing[0]), float(spacing[1])),
                       rows=rows, columns=columns, acquisition=acquisition,
                       sop_instance_uid=str(rows_ds.get("SOPInstanceUID", "")),
                       thickness=thickness)


def _check_uniform(slices: list[SliceHeader], *, name: str) -> None:
    first = slices[0]
    for s in slices[1:]:
        if np.max(np.abs(s.orientation - first.orientation)) > ORIENTATION_TOLERANCE:
            raise DicomError(
                f"mixed orientations in one series: {first.label} has ImageOrientationPatient "
                f"{_fmt(first.orientation)}, {s.label} has {_fmt(s.orientation)}", path=name)
        if (s.rows, s.columns) != (first.rows, first.columns):
            raise DicomError(
                f"slices of different size: {first.label} is {first.columns}x{first.rows}, "
                f"{s.label} is {s.columns}x{s.rows} (columns x rows)", path=name)
        if not np.allclose(s.pixel_spacing, first.pixel_spacing, rtol=1e-4, atol=1e-5):
            raise DicomError(
                f"different PixelSpacing in one series: {first.label} has "
                f"{list(first.pixel_spacing)}, {s.label} has {list(s.pixel_spacing)}", path=name)


def _remove_duplicates(slices: list[SliceHeader], sorted_idx: list[int], normal: np.ndarray, *,
                       name: str) -> tuple[list[int], list[int], list[int]]:
    order: list[int] = []
    duplicates: list[int] = []
    duplicate_of: list[int] = []
    for n in sorted_idx:
        if order:
            kept = slices[order[-1]]
            here = slices[n]
            if np.max(np.abs(here.position - kept.position)) <= SAME_POSITION_MM:
                if here.acquisition != kept.acquisition:
                    raise DicomError(
                        f"two slices at one position {_fmt(here.position)} from different "
                        f"acquisitions (4D, multi-echo or repeated scan): {kept.label} and "
                        f"{here.label}", path=name)
                duplicates.append(n)
                duplicate_of.append(order[-1])
                continue
            if abs(float((here.position - kept.position) @ normal)) <= SAME_POSITION_MM:
                raise DicomError(
                    f"two slices at one depth with different in-plane positions: {kept.label} "
                    f"at {_fmt(kept.position)} and {here.label} at {_fmt(here.position)}",
                    path=name)
        order.append(n)
    return order, duplicates, duplicate_of


def _stack_step(slices: list[SliceHeader], order: list[int], depth: np.ndarray,
                normal: np.ndarray, row: np.ndarray, col: np.ndarray, *, dx: float, dy: float,
                name: str) -> tuple[float, tuple[float, float]]:
    """Slice step along the normal (mm) and the in-plane shear per mm of depth (row, col)."""
    if len(order) == 1:
        return _single_slice_thickness(slices, order[0]), (0.0, 0.0)
    d = depth[order]
    steps = np.diff(d)
    median = float(np.median(steps))
    for n, gap in enumerate(steps):
        if gap > GAP_FACTOR * median:
            raise DicomError(
                f"missing slice: a gap of {gap:.3f} mm between {slices[order[n]].label} and "
                f"{slices[order[n + 1]].label} where slices are {median:.3f} mm apart", path=name)
    deviation = np.abs(steps - median)
    worst = int(np.argmax(deviation))
    if deviation[worst] > max(UNEVEN_FLOOR_MM, UNEVEN_TOLERANCE * median):
        raise DicomError(
            f"uneven slice spacing: {steps[worst]:.3f} mm between {slices[order[worst]].label} "
            f"and {slices[order[worst + 1]].label}, median {median:.3f} mm", path=name)
    step = float((d[-1] - d[0]) / (len(order) - 1))
    positions = np.array([slices[n].position for n in order])
    inplane = positions - positions[0] - np.outer(d - d[0], normal)
    shear = inplane[-1] / (d[-1] - d[0])
    residual = inplane - np.outer(d - d[0], shear)
    if np.max(np.abs(residual)) > max(SHEAR_DRIFT_MM, 0.05 * min(dx, dy)):
        raise DicomError("slices do not lie on one straight stack (in-plane positions jump "
                         "between slices)", path=name)
    if np.linalg.norm(inplane[-1]) <= SHEAR_DRIFT_MM:
        return step, (0.0, 0.0)
    return step, (float(shear @ row), float(shear @ col))


def _single_slice_thickness(slices: list[SliceHeader], n: int) -> float:
    """A lone slice has no neighbour to measure against; its thickness is the best guess."""
    thickness = slices[n].thickness
    return thickness if thickness is not None and thickness > 0 else 1.0


def _floats(ds: Any, keyword: str, count: int, *, label: str, name: str) -> np.ndarray:
    value = ds.get(keyword) if ds is not None else None
    try:
        values = np.array([float(v) for v in value], dtype=np.float64) if value else None
    except (TypeError, ValueError):
        values = None
    if values is None or values.shape != (count,) or not np.all(np.isfinite(values)):
        raise DicomError(f"{label} has no valid {keyword}", path=name)
    return values


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _hashable(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return tuple(str(v) for v in value)
    return str(value)


def _label(ds: Any, index: int) -> str:
    filename = getattr(ds, "filename", None)
    if isinstance(filename, (str, Path)) and str(filename):
        return Path(filename).name
    return f"instance {index + 1}"


def _fmt(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
