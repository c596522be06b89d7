"""Build a DICOM SEG of one timepoint's tracked lesions on its source image grid (highdicom).

One BINARY segment per lesion with voxels of its own at this timepoint, numbered 1..n in track
order, labelled and tracked (TrackingID ``L1``..., TrackingUID) exactly as in the SR. The mask
is on the grid the source image was loaded on (``tNN_mask_native.nii.gz``), so every source
frame maps onto whole voxels; frames without any lesion are left out (highdicom's default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medseq import __version__
from medseq.dicom_objects.errors import AnnotationError
from medseq.dicom_objects.grid import ImageGrid, functional_group, plane_pixel_map
from medseq.dicom_objects.records import LesionReport

SEGMENT_ALGORITHM = "medseq lesion tracking"


def build_seg(sources: Sequence[Any], labels: np.ndarray, grid: ImageGrid,
              lesions: Sequence[LesionReport], *, series_uid: str, sop_uid: str,
              series_number: int = 9701) -> Any:
    """A ``highdicom.seg.Segmentation`` of ``labels`` (value n = segment n) over ``sources``.

    Args:
        sources: the source series' datasets (headers are enough), any order.
        labels: integer array on ``grid``; value ``lesion.segment`` marks that lesion.
        grid: the grid ``labels`` is on (the source image's).
        lesions: the lesions with a ``segment`` number become segments.
        series_uid: SeriesInstanceUID of the new SEG series.
        sop_uid: SOPInstanceUID of the SEG.
        series_number: SeriesNumber of the SEG series.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    segmented = sorted((les for les in lesions if les.segment is not None),
                       key=lambda les: int(les.segment or 0))
    if not segmented:
        raise ValueError("a SEG needs at least one lesion with voxels")
    algorithm = hd.AlgorithmIdentificationSequence(
        name=SEGMENT_ALGORITHM, version=__version__,
        family=codes.cid7162.MorphologicalOperations)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=int(les.segment or 0), segment_label=les.track_id,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algorithm, tracking_uid=les.tracking_uid,
            tracking_id=les.track_id)
        for les in segmented]
    wanted = np.asarray([les.segment for les in segmented])
    kept = np.where(np.isin(labels, wanted), labels, 0)
    frames = source_frames(sources, kept, grid)
    top = int(wanted.max())
    pixel_array = frames.astype(np.uint8 if top <= 255 else np.uint16, copy=False)
    return hd.seg.Segmentation(
        source_images=list(sources), pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=series_uid,
        series_number=series_number, sop_instance_uid=sop_uid, instance_number=1,
        manufacturer="medseq", manufacturer_model_name="medseq",
        software_versions=__version__, device_serial_number="1",
        content_description="Tracked lesions", content_label="LESIONS",
        series_description="medseq lesions")


def source_frames(sources: Sequence[Any], labels: np.ndarray, grid: ImageGrid) -> np.ndarray:
    """``labels`` as the source frames see them: ``(frames, rows, columns)`` in source order.

    Single-frame sources give one frame each; a multi-frame source gives its frames.

    Raises:
        AnnotationError: a source frame does not lie on ``grid``.
    """
    out = []
    for ds in sources:
        for position, orientation, spacing in frame_planes(ds):
            mapping = plane_pixel_map(position, orientation, spacing, grid)
            if mapping is None:
                raise AnnotationError("a source image does not lie on the mask's grid",
                                      path=str(getattr(ds, "filename", "") or "source"))
            out.append(_gather(labels, mapping, int(ds.Rows), int(ds.Columns)))
    return np.stack(out)


def frame_planes(ds: Any) -> list[tuple[np.ndarray, np.ndarray, tuple[float, float]]]:
    """Position, orientation and pixel spacing of each frame of an image dataset."""
    if "PerFrameFunctionalGroupsSequence" not in ds:
        spacing = [float(v) for v in ds.PixelSpacing]
        return [(np.asarray([float(v) for v in ds.ImagePositionPatient]),
                 np.asarray([float(v) for v in ds.ImageOrientationPatient]),
                 (spacing[0], spacing[1]))]
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds \
        else None
    planes = []
    for item in ds.PerFrameFunctionalGroupsSequence:
        position = functional_group(item, shared, "PlanePositionSequence")
        orientation = functional_group(item, shared, "PlaneOrientationSequence")
        measures = functional_group(item, shared, "PixelMeasuresSequence")
        spacing = [float(v) for v in measures.PixelSpacing]
        planes.append((np.asarray([float(v) for v in position.ImagePositionPatient]),
                       np.asarray([float(v) for v in orientation.ImageOrientationPatient]),
                       (spacing[0], spacing[1])))
    return planes


def _gather(labels: np.ndarray, mapping: tuple[np.ndarray, np.ndarray], rows: int,
            cols: int) -> np.ndarray:
    linear, offset = mapping
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    voxels = (c[..., None] * linear[:, 0] + r[..., None] * linear[:, 1] + offset)
    shape = np.asarray(labels.shape)
    inside = np.all((voxels >= 0) & (voxels < shape), axis=-1)
    frame = np.zeros((rows, cols), dtype=labels.dtype)
    v = voxels[inside]
    frame[inside] = labels[v[:, 0], v[:, 1], v[:, 2]]
    return frame
