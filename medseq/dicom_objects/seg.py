"""Read a DICOM SEG (highdicom) as a lesion label mask on the image grid.

Each selected segment (see :mod:`.labels`) becomes one label; without ``--roi`` label n is
segment n. Every frame must lie on a plane of the image grid with the image's pixel spacing (its
pixels are then whole voxels, whatever the frame order or orientation); BINARY, FRACTIONAL
(a voxel is in at 50% or more of MaximumFractionalValue) and LABELMAP segmentations are read.
Refused, one line naming the file: a SEG on another frame of reference than the image or
referencing another series, frames off the image grid, a selected segment without voxels.
Overlapping segments: the later segment wins, with a warning (:func:`.labels.combine`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from medseq.dicom_objects.errors import AnnotationError
from medseq.dicom_objects.grid import ImageGrid, functional_group, plane_pixel_map
from medseq.dicom_objects.labels import LabelMask, MaskLabel, combine, select
from medseq.errors import MissingDependencyError


def read_seg(path: Path, grid: ImageGrid, *, roi: re.Pattern[str] | None = None) -> LabelMask:
    """Read the segments of the SEG at ``path`` that ``roi`` selects onto ``grid``.

    Raises:
        AnnotationError: not a SEG usable on this image (see the module docs).
    """
    path = Path(path)
    seg = _segread(path)
    frame_uid = str(seg.get("FrameOfReferenceUID", "") or "")
    if grid.frame_of_reference_uid and frame_uid and frame_uid != grid.frame_of_reference_uid:
        raise AnnotationError(f"is on frame of reference {frame_uid}, the image on "
                              f"{grid.frame_of_reference_uid}: different coordinate systems",
                              path=path)
    refs = {str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])
            if item.get("SeriesInstanceUID")}
    if grid.series_uid and refs and grid.series_uid not in refs:
        raise AnnotationError(f"references series {', '.join(sorted(refs))}, not the image "
                              f"series {grid.series_uid}", path=path)
    # A LABELMAP SEG may describe its background as segment 0: never a lesion.
    segments = {int(item.SegmentNumber): item for item in seg.SegmentSequence
                if int(item.SegmentNumber) > 0}
    names = [(number, str(item.get("SegmentLabel", "") or f"segment {number}"))
             for number, item in sorted(segments.items())]
    chosen = select(names, roi, path=path, what="segment")
    layers = _segment_layers(seg, grid, [n for n, _ in chosen], path=path)
    labelled = []
    for label, (number, name) in enumerate(chosen, start=1):
        layer = layers[number]
        if not layer.any():
            raise AnnotationError(f"segment {number} ({name}) is empty", path=path)
        item = segments[number]
        labelled.append((MaskLabel(label=label, name=name, number=number,
                                   tracking_uid=_text(item, "TrackingUID"),
                                   tracking_id=_text(item, "TrackingID")), layer))
    array, warnings = combine(labelled, grid.shape, path=path, what="segment")
    return LabelMask(array=array, labels=tuple(lab for lab, _ in labelled), source=path,
                     kind="SEG", warnings=tuple(warnings))


def _segread(path: Path) -> Any:
    try:
        import highdicom as hd
    except ImportError:  # pragma: no cover - a dependency of medseq
        raise MissingDependencyError("reading DICOM SEG needs highdicom: pip install "
                                     "highdicom") from None
    try:
        return hd.seg.segread(path)
    except Exception as err:  # highdicom and pydicom raise many types for broken files
        message = " ".join(str(err).split())[:160]
        raise AnnotationError(f"not a readable DICOM SEG ({type(err).__name__}: {message})",
                              path=path) from None


def _segment_layers(seg: Any, grid: ImageGrid, numbers: list[int], *, path: Path
                    ) -> dict[int, np.ndarray]:
    """A boolean layer on ``grid`` per selected segment number."""
    layers = {n: np.zeros(grid.shape, dtype=bool) for n in numbers}
    kind = str(seg.get("SegmentationType", "BINARY")).upper()
    frames = np.asarray(seg.pixel_array)
    if frames.ndim == 2:
        frames = frames[None]
    threshold = 1.0
    if kind == "FRACTIONAL":
        threshold = float(seg.get("MaximumFractionalValue", 255)) / 2.0
    shared = seg.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in seg \
        else None
    per_frame = seg.PerFrameFunctionalGroupsSequence
    for f, item in enumerate(per_frame):
        if kind == "LABELMAP":
            wanted = [(n, frames[f] == n) for n in numbers]
        else:
            ident = functional_group(item, shared, "SegmentIdentificationSequence")
            number = int(ident.ReferencedSegmentNumber) if ident is not None else 0
            if number not in layers:
                continue
            wanted = [(number, frames[f] >= threshold)]
        if not any(on.any() for _, on in wanted):
            continue
        place = _frame_placement(item, shared, grid, path=path, frame=f + 1)
        for number, on in wanted:
            if not _paint(layers[number], on, place):
                raise AnnotationError(f"frame {f + 1} has segment {number} pixels outside the "
                                      "image", path=path)
    return layers


def _frame_placement(item: Any, shared: Any, grid: ImageGrid, *, path: Path, frame: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    position = functional_group(item, shared, "PlanePositionSequence")
    orientation = functional_group(item, shared, "PlaneOrientationSequence")
    measures = functional_group(item, shared, "PixelMeasuresSequence")
    if position is None or orientation is None or measures is None:
        raise AnnotationError(f"frame {frame} has no plane position, orientation or pixel "
                              "spacing", path=path)
    spacing = [float(v) for v in measures.PixelSpacing]
    mapping = plane_pixel_map(np.asarray([float(v) for v in position.ImagePositionPatient]),
                              np.asarray([float(v) for v in orientation.ImageOrientationPatient]),
                              (spacing[0], spacing[1]), grid)
    if mapping is None:
        raise AnnotationError(f"frame {frame} does not lie on the image grid (another plane, "
                              "orientation or pixel spacing)", path=path)
    return mapping


def _paint(layer: np.ndarray, on: np.ndarray, place: tuple[np.ndarray, np.ndarray]) -> bool:
    """OR a frame's pixels ``on[row, column]`` into ``layer``; False if some fall outside."""
    linear, offset = place
    rows, cols = np.nonzero(on)
    voxels = np.outer(cols, linear[:, 0]) + np.outer(rows, linear[:, 1]) + offset
    shape = np.asarray(layer.shape)
    if not np.all((voxels >= 0) & (voxels < shape)):
        return False
    layer[voxels[:, 0], voxels[:, 1], voxels[:, 2]] = True
    return True


def _text(item: Any, keyword: str) -> str | None:
    value = item.get(keyword)
    return str(value) if value not in (None, "") else None
