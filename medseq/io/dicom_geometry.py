"""Header-only geometry of one DICOM series: slice order, validation and the RAS+ affine.

Slices are ordered by ImagePositionPatient projected on the slice normal (the cross product of
the ImageOrientationPatient row and column cosines), never by InstanceNumber or file name. A
series is accepted only when it forms one regular stack; anything else raises a
:class:`~medseq.errors.DicomError` whose one-line message names the series and the reason.
DICOM's LPS coordinates are converted to RAS+ here, once.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseq.errors import DicomError

__all__ = ["SeriesGeometry", "SliceHeader", "check_image_kind", "series_geometry",
           "slice_headers"]

ORIENTATION_TOLERANCE = 1e-3
"""Largest difference between direction cosines still counted as one orientation."""
SAME_POSITION_MM = 0.01
"""Slices closer than this along every axis sit at one position (duplicates or a conflict)."""
UNEVEN_TOLERANCE = 0.01
"""Relative deviation of one slice step from the median step still counted as even."""
UNEVEN_FLOOR_MM = 0.01
"""Absolute deviation always tolerated, for positions rounded to a few decimals."""
SHEAR_DRIFT_MM = 0.01
"""In-plane drift over the whole stack above which the stack counts as sheared (gantry tilt)."""
ACQUISITION_KEYWORDS = ("TemporalPositionIdentifier", "EchoNumbers", "DiffusionBValue",
                        "TriggerTime", "AcquisitionNumber", "ImageType")
"""Header fields that, when they differ between slices at one position, mean 4D or multi-echo."""
_ACQUISITION_KINDS = {
    "TemporalPositionIdentifier": "4D: time points",
    "TemporalPositionIndex": "4D: time points",
    "EchoNumbers": "multi-echo",
    "EffectiveEchoTime": "multi-echo",
    "DiffusionBValue": "diffusion: several b-values",
    "TriggerTime": "4D: cardiac phases or time points",
    "AcquisitionNumber": "repeated acquisitions",
    "ImageType": "different image types, e.g. magnitude and phase",
    "FrameType": "different frame types, e.g. magnitude, phase or B0 map",
    "ComplexImageComponent": "magnitude and phase mixed",
    "StackID": "several stacks",
}
"""What a difference in each field means, for error messages."""
_ENHANCED_ACQUISITION = ("TemporalPositionIndex", "StackID", "ComplexImageComponent",
                         "FrameType", "EffectiveEchoTime", "DiffusionBValue")
"""Per-frame fields of enhanced files compared like :data:`ACQUISITION_KEYWORDS`."""


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
    grid_offset: tuple[int, int] = (0, 0)
    """Where the acquired slice 0 starts in the (enlarged) resampled grid of a tilted stack,
    in pixels along (i, j): the grid grows so that every acquired voxel stays inside it."""
    labels: tuple[str, ...] = ()
    """For every slice index, how messages name it (``file`` or ``file frame N``)."""


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
    enhanced: bool = False
    temporal_positions: int = 0
    """NumberOfTemporalPositions of a classic file (0 when absent)."""


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
        check_image_kind(headers, name=name)
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
    # A tilted stack is resampled onto a grid that grows by the total in-plane shift, so that
    # every acquired voxel lands inside it (the first slice's extent alone would cut some off).
    extra = [math.ceil(abs(s * (len(order) - 1)) - 1e-6) if s else 0 for s in shear]
    offset = (-extra[0] if shear[0] < 0 else 0, -extra[1] if shear[1] < 0 else 0)
    affine = np.eye(4)
    affine[:3, 0] = row * dx
    affine[:3, 1] = col * dy
    affine[:3, 2] = normal * step
    affine[:3, 3] = positions[0] + offset[0] * dx * row + offset[1] * dy * col
    affine[:2, :] *= -1.0  # LPS -> RAS+
    return SeriesGeometry(
        order=tuple(order),
        duplicates=tuple(duplicates),
        affine=affine,
        shape=(first.columns + extra[0], first.rows + extra[1], len(order)),
        spacing=(float(dx), float(dy), float(step)),
        tilt_degrees=tilt,
        duplicate_of=tuple(duplicate_of),
        sources=tuple((s.source, s.frame) for s in slices),
        shear_pixels=shear,
        grid_offset=offset,
        labels=tuple(s.label for s in slices),
    )


def check_image_kind(headers: Sequence[Any], *, name: str) -> None:
    """Refuse, from headers alone, images that cannot form one grey-level 3D volume.

    Siemens MOSAIC images (slices tiled in one frame), colour images, and pixel descriptions
    (SamplesPerPixel, BitsAllocated, PixelRepresentation) that differ between files or that
    medseq cannot read. :func:`series_geometry` runs this, so ``scan`` refuses what loading would.
    """
    mosaics = [ds for ds in headers if "MOSAIC" in _image_type(ds)]
    if mosaics:
        what = (f"a 4D mosaic acquisition ({len(mosaics)} Siemens MOSAIC files, one per time "
                "point or direction)" if len(headers) > 1 else
                "a Siemens MOSAIC image (its slices are tiles of one frame)")
        raise DicomError(f"{_label(mosaics[0], 0)}: {what}; MOSAIC images are not unpacked: "
                         "convert the series with dcm2niix and give medseq the NIfTI file",
                         path=name)
    first = headers[0]
    samples = as_int(first.get("SamplesPerPixel"), 1)
    if samples != 1:
        raise DicomError(f"{_label(first, 0)} is a colour image (SamplesPerPixel={samples}); "
                         "only grey-level series can be loaded", path=name)
    bits = as_int(first.get("BitsAllocated"), 16)
    if bits not in (1, 8, 16, 32, 64):
        raise DicomError(f"{_label(first, 0)} has unsupported BitsAllocated {bits}", path=name)
    for index, ds in enumerate(headers[1:], start=1):
        for key in ("SamplesPerPixel", "BitsAllocated", "PixelRepresentation"):
            if as_int(ds.get(key), -1) != as_int(first.get(key), -1):
                raise DicomError(f"{key} differs between {_label(first, 0)} and "
                                 f"{_label(ds, index)}", path=name)


def slice_headers(headers: Sequence[Any], *, name: str) -> list[SliceHeader]:
    """One :class:`SliceHeader` per slice: per file, or per frame of enhanced multi-frame files."""
    out: list[SliceHeader] = []
    for index, ds in enumerate(headers):
        label = _label(ds, index)
        frames = as_int(ds.get("NumberOfFrames"), default=1)
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
        out.append(_make_slice(position, orient, measures, index=index, frame=f,
                               label=f"{label} frame {f + 1}", name=name, rows_ds=ds,
                               acquisition=_frame_acquisition(groups)))
    return out


def _frame_acquisition(groups: list[Any]) -> tuple[Any, ...]:
    """The :data:`_ENHANCED_ACQUISITION` values of one frame, from its functional groups."""
    content = _from_groups(groups, "FrameContentSequence")
    frame_type = (_from_groups(groups, "MRImageFrameTypeSequence")
                  or _from_groups(groups, "CTImageFrameTypeSequence"))
    echo = _from_groups(groups, "MREchoSequence")
    diffusion = _from_groups(groups, "MRDiffusionSequence")
    return (
        _hashable(content.get("TemporalPositionIndex")) if content is not None else None,
        _hashable(content.get("StackID")) if content is not None else None,
        _hashable(frame_type.get("ComplexImageComponent")) if frame_type is not None else None,
        _hashable(frame_type.get("FrameType")) if frame_type is not None else None,
        _hashable(echo.get("EffectiveEchoTime")) if echo is not None else None,
        _hashable(diffusion.get("DiffusionBValue")) if diffusion is not None else None,
    )


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
    unit = _unit_orientation(tuple(orientation.tolist()))
    if unit is None:
        raise DicomError(f"{label} has an invalid ImageOrientationPatient "
                         f"{_fmt(orientation)} (cosines not orthonormal)", path=name)
    orientation = unit
    if spacing[0] <= 0 or spacing[1] <= 0:
        raise DicomError(f"{label} has a non-positive PixelSpacing {_fmt(spacing)}", path=name)
    rows, columns = as_int(rows_ds.get("Rows"), 0), as_int(rows_ds.get("Columns"), 0)
    if rows <= 0 or columns <= 0:
        raise DicomError(f"{label} has no Rows/Columns", path=name)
    enhanced = acquisition is not None
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
                       thickness=thickness, enhanced=enhanced,
                       temporal_positions=0 if enhanced else as_int(
                           rows_ds.get("NumberOfTemporalPositions"), 0))


@functools.lru_cache(maxsize=256)
def _unit_orientation(values: tuple[float, ...]) -> np.ndarray | None:
    """Normalised cosines, or None when not orthonormal (cached: a series shares one)."""
    orientation = np.asarray(values, dtype=np.float64)
    row, col = orientation[:3], orientation[3:]
    nr, nc = np.linalg.norm(row), np.linalg.norm(col)
    if abs(nr - 1) > 0.01 or abs(nc - 1) > 0.01 or abs(float(row @ col)) > 0.01:
        return None
    unit = np.concatenate([row / nr, col / nc])
    unit.setflags(write=False)
    return unit


def _check_uniform(slices: list[SliceHeader], *, name: str) -> None:
    first = slices[0]
    for s in slices[1:]:
        if s.orientation is not first.orientation and (
                np.max(np.abs(s.orientation - first.orientation)) > ORIENTATION_TOLERANCE):
            raise DicomError(
                f"mixed orientations in one series: {first.label} has ImageOrientationPatient "
                f"{_fmt(first.orientation)}, {s.label} has {_fmt(s.orientation)}", path=name)
        if (s.rows, s.columns) != (first.rows, first.columns):
            raise DicomError(
                f"slices of different size: {first.label} is {first.columns}x{first.rows}, "
                f"{s.label} is {s.columns}x{s.rows} (columns x rows)", path=name)
        if s.pixel_spacing != first.pixel_spacing and not np.allclose(
                s.pixel_spacing, first.pixel_spacing, rtol=1e-4, atol=1e-5):
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
                _check_same_acquisition(kept, here, name=name)
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


def _check_same_acquisition(kept: SliceHeader, here: SliceHeader, *, name: str) -> None:
    """Two slices at one position may be copies of one slice; refuse them when headers say not.

    Copies (the same file twice, a re-sent instance, a classic and an enhanced copy of one
    acquisition) pass here and are compared pixel by pixel when loading. Slices whose
    acquisition fields differ, or that belong to a series announcing several temporal positions
    (NumberOfTemporalPositions, as GE fMRI series do with nothing else to tell volumes apart),
    are a 4D, multi-echo or mixed series and are refused here, so ``scan`` refuses them too.
    """
    if kept.enhanced != here.enhanced:
        return  # classic and enhanced copies describe acquisitions differently: pixels decide
    keywords = _ENHANCED_ACQUISITION if here.enhanced else ACQUISITION_KEYWORDS
    where = f"two slices at one position {_fmt(here.position)} from different acquisitions"
    for keyword, a, b in zip(keywords, kept.acquisition, here.acquisition, strict=True):
        if a != b:
            raise DicomError(
                f"{where} ({_ACQUISITION_KINDS.get(keyword, 'different acquisitions')}: "
                f"{keyword} {_show(a)} and {_show(b)}): {kept.label} and {here.label}; one 3D "
                "volume per series is needed", path=name)
    temporal = max(kept.temporal_positions, here.temporal_positions)
    if temporal > 1 and kept.sop_instance_uid != here.sop_instance_uid:
        raise DicomError(
            f"{where} (4D: NumberOfTemporalPositions {temporal}, with several instances at "
            f"each position): {kept.label} and {here.label}; one 3D volume per series is needed",
            path=name)


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    return "\\".join(value) if isinstance(value, tuple) else str(value)


def _stack_step(slices: list[SliceHeader], order: list[int], depth: np.ndarray,
                normal: np.ndarray, row: np.ndarray, col: np.ndarray, *, dx: float, dy: float,
                name: str) -> tuple[float, tuple[float, float]]:
    """Slice step along the normal (mm) and the in-plane shear per mm of depth (row, col)."""
    if len(order) == 1:
        return _single_slice_thickness(slices, order[0]), (0.0, 0.0)
    d = depth[order]
    _check_even_steps(slices, order, d, name=name)
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


def _check_even_steps(slices: list[SliceHeader], order: list[int], d: np.ndarray, *,
                      name: str) -> None:
    """Refuse a stack whose slice steps are not all equal, saying what is wrong.

    A single step that is a whole multiple (2x, 3x...) of the steps around it is a missing
    slice; any other change of step is uneven spacing (such as a CT with 4 mm, then 7 mm
    slices), which medseq refuses rather than resample: the volume would hold voxels that
    were never acquired at the spacing it claims.
    """
    steps = np.diff(d)
    median = float(np.median(steps))

    def same(a: float, b: float) -> bool:
        return abs(a - b) <= max(UNEVEN_FLOOR_MM, UNEVEN_TOLERANCE * max(a, b))

    # Runs of equal steps: (first step index, count, value).
    runs: list[tuple[int, int, float]] = []
    for n, gap in enumerate(steps):
        if runs and same(runs[-1][2], float(gap)):
            start, count, value = runs[-1]
            runs[-1] = (start, count + 1, value)
        else:
            runs.append((n, 1, float(gap)))
    if len(runs) == 1:
        return
    # The stack's step: the median when some run has it, else the longest run's.
    main = median if any(same(median, r[2]) for r in runs) else max(runs, key=lambda r: r[1])[2]
    for r, (start, count, value) in enumerate(runs):
        if same(value, main):
            continue
        ratio = value / main if main > 0 else 0.0
        multiple = round(ratio)
        if (count == 1 and multiple >= 2 and same(value, multiple * main)
                and all(same(runs[q][2], main) for q in (r - 1, r + 1) if 0 <= q < len(runs))):
            a, b = slices[order[start]], slices[order[start + 1]]
            raise DicomError(
                f"missing slice: a gap of {value:.3f} mm between {a.label} and {b.label} where "
                f"slices are {main:.3f} mm apart", path=name)
    first_change = runs[1][0]
    before, after = runs[0][2], runs[1][2]
    a, b = slices[order[first_change]], slices[order[first_change + 1]]
    raise DicomError(
        f"slice spacing changes from {_mm(before)} to {_mm(after)} mm at "
        f"z={_mm(float(d[first_change]))} mm (between {a.label} and {b.label}; z along the "
        "slice normal); uneven spacing is refused, not resampled", path=name)


def _mm(value: float) -> str:
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _single_slice_thickness(slices: list[SliceHeader], n: int) -> float:
    """A lone slice has no neighbour to measure against; its thickness is the best guess."""
    thickness = slices[n].thickness
    return thickness if thickness is not None and thickness > 0 else 1.0


def _floats(ds: Any, keyword: str, count: int, *, label: str, name: str) -> np.ndarray:
    value = ds.get(keyword) if ds is not None else None
    try:
        floats = [float(v) for v in value] if value else None
    except (TypeError, ValueError):
        floats = None
    # (checked in plain Python: this runs for every slice of every series a scan looks at)
    if floats is None or len(floats) != count or not all(map(math.isfinite, floats)):
        raise DicomError(f"{label} has no valid {keyword}", path=name)
    return np.array(floats, dtype=np.float64)


def as_int(value: Any, default: int) -> int:
    """A header value as an int; ``default`` when it is missing, empty or not a number."""
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def as_float(value: Any, default: float) -> float:
    """A header value as a float; ``default`` when it is missing, empty or not a number."""
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _hashable(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return tuple(str(v) for v in value)
    return str(value)


def _image_type(ds: Any) -> list[str]:
    value = ds.get("ImageType")
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [str(v).strip().upper() for v in values]


def _label(ds: Any, index: int) -> str:
    filename = getattr(ds, "filename", None)
    if isinstance(filename, str) and filename:
        return os.path.basename(filename)
    if isinstance(filename, Path) and str(filename):
        return filename.name
    return f"instance {index + 1}"


def _fmt(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
