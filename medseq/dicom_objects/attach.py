"""Attach the SEG and RTSTRUCT objects of a DICOM export to the image series they reference.

An object names its image series in ReferencedSeriesSequence (SEG) or
ReferencedFrameOfReferenceSequence > RTReferencedStudySequence > RTReferencedSeriesSequence
(RTSTRUCT); an object that names none is attached through its frame of reference when exactly
one image series of the export is on it. Discovery gives :func:`attach_annotations` the objects
it set aside and an index of the image series it chose
(:func:`medseq.io.dicom_grouping.discover_dicom`); the timepoint of each attached series then has a
lesion mask without any manifest, read by :func:`load_annotation` (through
:func:`medseq.io.load.load_timepoint_mask`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseq.dicom_objects.errors import AnnotationError
from medseq.dicom_objects.grid import ImageGrid
from medseq.dicom_objects.labels import LabelMask
from medseq.dicom_objects.rtstruct import referenced_series
from medseq.io.dicom_fields import ANNOTATION_KINDS
from medseq.io.volume import Volume


@dataclass(frozen=True)
class AnnotationObject:
    """A SEG or RTSTRUCT file and what it references (headers only)."""

    path: Path
    kind: str
    """``SEG`` or ``RTSTRUCT``."""
    series_uids: tuple[str, ...]
    """Image series it references (may be empty)."""
    frame_of_reference_uid: str
    names: tuple[str, ...] = ()
    """SegmentLabels or ROINames in file order (what ``--roi`` selects from)."""


@dataclass(frozen=True)
class IndexedSeries:
    """What attaching needs of one image series discovery chose."""

    series_uid: str
    frame_of_reference_uid: str
    timepoint: Any = None
    """Whatever the caller uses to find the timepoint again (e.g. ``(patient, name)``)."""


@dataclass
class Attachment:
    """Objects per image series, and the ones that could not be attached with the reason."""

    by_series: dict[str, list[AnnotationObject]] = field(default_factory=dict)
    refused: list[tuple[Path, str]] = field(default_factory=list)


def read_annotation_object(path: Path) -> AnnotationObject | None:
    """The SEG or RTSTRUCT at ``path`` (None for any other DICOM object)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # not DICOM, or broken: discovery reports such files already
        return None
    kind = ANNOTATION_KINDS.get(str(ds.get("SOPClassUID", "")))
    if kind is None:
        return None
    if kind == "SEG":
        series = tuple(str(item.SeriesInstanceUID)
                       for item in ds.get("ReferencedSeriesSequence", [])
                       if item.get("SeriesInstanceUID"))
        frame = str(ds.get("FrameOfReferenceUID", "") or "")
        names = tuple(str(item.get("SegmentLabel", "") or f"segment {item.SegmentNumber}")
                      for item in ds.get("SegmentSequence", [])
                      if int(item.get("SegmentNumber", 0) or 0) > 0)
    else:
        series = tuple(sorted(referenced_series(ds)))
        frames = [str(item.FrameOfReferenceUID)
                  for item in ds.get("ReferencedFrameOfReferenceSequence", [])
                  if item.get("FrameOfReferenceUID")]
        frame = frames[0] if frames else ""
        names = tuple(str(item.get("ROIName", "") or f"ROI {item.get('ROINumber', '')}")
                      for item in ds.get("StructureSetROISequence", []))
    return AnnotationObject(path=Path(path), kind=kind, series_uids=series,
                            frame_of_reference_uid=frame, names=names)


def attach_annotations(objects: Iterable[AnnotationObject],
                       series_index: Mapping[str, IndexedSeries]) -> Attachment:
    """Attach each object to the image series (of ``series_index``) it references.

    Refused with a reason: an object referencing only series that are not in the index (not
    in the export, or not chosen for a timepoint), one whose frame of reference differs from
    its series', one referencing nothing whose frame of reference no single series is on.
    """
    attachment = Attachment()
    for obj in objects:
        target, reason = _target(obj, series_index)
        if target is None:
            attachment.refused.append((obj.path, reason))
            continue
        attachment.by_series.setdefault(target.series_uid, []).append(obj)
    return attachment


def load_annotation(obj: AnnotationObject, image: Volume, *, frame_of_reference_uid: str,
                    roi: re.Pattern[str] | None = None) -> LabelMask:
    """The lesion label mask of ``obj`` on the grid of its loaded image.

    Raises:
        AnnotationError: the object cannot give a mask on this image (one line, the file).
    """
    from medseq.dicom_objects.rtstruct import read_rtstruct
    from medseq.dicom_objects.seg import read_seg

    grid = ImageGrid.of_volume(image, frame_of_reference_uid=frame_of_reference_uid)
    if obj.kind == "SEG":
        return read_seg(obj.path, grid, roi=roi)
    if obj.kind == "RTSTRUCT":
        return read_rtstruct(obj.path, grid, roi=roi)
    raise AnnotationError(f"not a SEG or RTSTRUCT ({obj.kind})", path=obj.path)


def _target(obj: AnnotationObject, index: Mapping[str, IndexedSeries]
            ) -> tuple[IndexedSeries | None, str]:
    if obj.series_uids:
        known = [index[uid] for uid in obj.series_uids if uid in index]
        if not known:
            return None, (f"{obj.kind} references series {', '.join(obj.series_uids)}, which "
                          "is not an image series of this export (or not the one chosen for "
                          "its study)")
        target = known[0]
    else:
        on_frame = [s for s in index.values()
                    if obj.frame_of_reference_uid
                    and s.frame_of_reference_uid == obj.frame_of_reference_uid]
        if len(on_frame) != 1:
            return None, (f"{obj.kind} references no series, and {len(on_frame)} image series "
                          "of this export are on its frame of reference")
        target = on_frame[0]
    if (obj.frame_of_reference_uid and target.frame_of_reference_uid
            and obj.frame_of_reference_uid != target.frame_of_reference_uid):
        return None, (f"{obj.kind} is on frame of reference {obj.frame_of_reference_uid}, its "
                      f"series {target.series_uid} on {target.frame_of_reference_uid}")
    return target, ""
