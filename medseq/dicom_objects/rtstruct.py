"""Read an RTSTRUCT's closed planar contours as a lesion label mask on the image grid.

Each selected ROI (see :mod:`.labels`) becomes one label. Its contours are converted from LPS mm
to voxel coordinates once, must each lie on one image plane (within 1% of the spacing along the
plane's normal, at least 0.01 mm), and are filled slice by slice with the even-odd rule of
:mod:`.rasterize` (a voxel is in when its centre is inside; inner contours are holes; several
contours on a slice are islands). Refused, each with one line naming the file: an RTSTRUCT
whose ROI is on another frame of reference than the image, or that references another series;
open contours (``OPEN_PLANAR``, ``OPEN_NONPLANAR``, ``POINT``); contours off the image planes
or outside the image; an ROI without contours or enclosing no voxel centre.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from medseq.dicom_objects.errors import AnnotationError
from medseq.dicom_objects.grid import ImageGrid, lps_to_voxels
from medseq.dicom_objects.labels import LabelMask, MaskLabel, combine, select
from medseq.dicom_objects.rasterize import fill_even_odd
from medseq.io.dicom_fields import RTSTRUCT_SOP_CLASS


def read_rtstruct(path: Path, grid: ImageGrid, *, roi: re.Pattern[str] | None = None
                  ) -> LabelMask:
    """Rasterise the ROIs of the RTSTRUCT at ``path`` that ``roi`` selects onto ``grid``.

    Raises:
        AnnotationError: the file is not a usable RTSTRUCT for this image (see module docs).
    """
    path = Path(path)
    ds = read_dataset(path)
    if str(ds.get("SOPClassUID", "")) != RTSTRUCT_SOP_CLASS and ds.get("Modality") != "RTSTRUCT":
        raise AnnotationError("not an RT structure set", path=path)
    _check_series(ds, grid, path)
    rois = {int(item.ROINumber): item for item in ds.get("StructureSetROISequence", [])}
    names = [(number, str(item.get("ROIName", "") or f"ROI {number}"))
             for number, item in rois.items()]
    chosen = select(names, roi, path=path, what="ROI")
    contours = {int(item.ReferencedROINumber): item
                for item in ds.get("ROIContourSequence", []) if "ReferencedROINumber" in item}
    layers = []
    for label, (number, name) in enumerate(chosen, start=1):
        frame_uid = str(rois[number].get("ReferencedFrameOfReferenceUID", "") or "")
        if grid.frame_of_reference_uid and frame_uid and frame_uid != grid.frame_of_reference_uid:
            raise AnnotationError(
                f"ROI {number} ({name}) is on frame of reference {frame_uid}, the image on "
                f"{grid.frame_of_reference_uid}: different coordinate systems", path=path)
        where = f"ROI {number} ({name})"
        layer = _rasterise_roi(contours.get(number), grid, path=path, where=where)
        layers.append((MaskLabel(label=label, name=name, number=number), layer))
    array, warnings = combine(layers, grid.shape, path=path, what="ROI")
    return LabelMask(array=array, labels=tuple(lab for lab, _ in layers), source=path,
                     kind="RTSTRUCT", warnings=tuple(warnings))


def read_dataset(path: Path) -> Any:
    """The whole dataset at ``path`` (pydicom); one-line AnnotationError when unreadable."""
    import pydicom

    try:
        return pydicom.dcmread(path)
    except Exception as err:  # pydicom raises many types for broken files
        raise AnnotationError(f"not a readable DICOM file ({type(err).__name__})",
                              path=path) from None


def referenced_series(ds: Any) -> set[str]:
    """Series UIDs an RTSTRUCT's ReferencedFrameOfReferenceSequence names."""
    uids: set[str] = set()
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                if series.get("SeriesInstanceUID"):
                    uids.add(str(series.SeriesInstanceUID))
    return uids


def _check_series(ds: Any, grid: ImageGrid, path: Path) -> None:
    refs = referenced_series(ds)
    if grid.series_uid and refs and grid.series_uid not in refs:
        raise AnnotationError(f"references series {', '.join(sorted(refs))}, not the image "
                              f"series {grid.series_uid}", path=path)


def _rasterise_roi(item: Any, grid: ImageGrid, *, path: Path, where: str) -> np.ndarray:
    sequence = list(item.get("ContourSequence", [])) if item is not None else []
    if not sequence:
        raise AnnotationError(f"{where} is empty (no contours)", path=path)
    slices: dict[tuple[int, int], list[np.ndarray]] = defaultdict(list)
    for n, contour in enumerate(sequence, start=1):
        kind = str(contour.get("ContourGeometricType", "")).upper()
        if kind != "CLOSED_PLANAR":
            raise AnnotationError(f"{where} contour {n} is {kind or 'untyped'}, not "
                                  "CLOSED_PLANAR: only closed contours enclose a lesion",
                                  path=path)
        points = np.asarray([float(v) for v in contour.get("ContourData", [])])
        if points.size < 9 or points.size % 3:
            raise AnnotationError(f"{where} contour {n} has fewer than 3 points", path=path)
        voxels = lps_to_voxels(points.reshape(-1, 3), grid.affine)
        axis, index = _plane_of(voxels, grid, path=path, where=f"{where} contour {n}")
        plane = [a for a in range(3) if a != axis]
        slices[(axis, index)].append(voxels[:, plane])
    layer = np.zeros(grid.shape, dtype=bool)
    for (axis, index), polygons in slices.items():
        plane = [a for a in range(3) if a != axis]
        filled = fill_even_odd(polygons, (grid.shape[plane[0]], grid.shape[plane[1]]))
        view = np.moveaxis(layer, axis, 0)
        view[index] |= filled
    if not layer.any():
        raise AnnotationError(f"{where} encloses no voxel centre of the image", path=path)
    return layer


def _plane_of(voxels: np.ndarray, grid: ImageGrid, *, path: Path, where: str
              ) -> tuple[int, int]:
    """The voxel axis a contour is constant along and the image plane index it lies on."""
    spread = np.ptp(voxels, axis=0) * grid.spacing
    axis = int(np.argmin(spread))
    position = voxels[:, axis]
    index = int(np.rint(position.mean()))
    off_mm = float(np.abs(position - index).max() * grid.spacing[axis])
    tolerance = grid.tolerance_mm(axis)
    if off_mm > tolerance:
        raise AnnotationError(f"{where} does not lie on an image plane ({off_mm:.3f} mm off, "
                              f"tolerance {tolerance:.3f} mm)", path=path)
    if not 0 <= index < grid.shape[axis]:
        raise AnnotationError(f"{where} lies outside the image (plane {index} of "
                              f"{grid.shape[axis]})", path=path)
    return axis, index
