"""Turn what discovery found into voxels: a timepoint's image and its mask.

Example:
    >>> image = load_image(timepoint.image)
    >>> mask = load_timepoint_mask(timepoint, like=image, roi="lesion")
"""

from __future__ import annotations

import re
from pathlib import Path

from medseq.errors import DicomError
from medseq.io.cohort import ImageFormat, SeriesInfo, Timepoint
from medseq.io.nifti import MASK_TOLERANCE_MM, check_mask_geometry, load_nifti, mask_labels
from medseq.io.volume import Provenance, Volume


def load_image(series: SeriesInfo) -> Volume:
    """Load a chosen series (DICOM files or one NIfTI file) as a :class:`Volume`.

    Raises:
        DicomError: the DICOM series cannot be read or is inconsistent.
        NiftiError: the NIfTI file cannot be used.
    """
    if series.format is ImageFormat.NIFTI:
        return load_nifti(series.files[0])
    from medseq.io.dicom import load_series

    if not series.files:
        raise DicomError("series lists no files", path=series.series_uid or "series")
    return load_series(series.files)


def load_mask(path: Path, *, like: Volume, tolerance_mm: float = MASK_TOLERANCE_MM) -> Volume:
    """Load a NIfTI mask on the voxel grid of its image ``like``.

    A mask stored in another axis order or direction over the same grid (saved from a
    reoriented copy of the image) is brought into the image's voxel order; any other
    difference in geometry is refused rather than resampled, because a silently shifted mask
    gives wrong lesion measurements.

    Returns:
        A Volume with non-negative integer labels (uint8 when they fit) and ``like``'s affine.

    Raises:
        NiftiError: unreadable, not 3D, NaN, negative or fractional values, or a voxel grid
            that differs from the image's beyond ``tolerance_mm``.
    """
    path = Path(path)
    mask = load_nifti(path)
    match = check_mask_geometry(mask.shape, mask.affine, image_shape=like.shape,
                                image_affine=like.affine, mask_path=path,
                                tolerance_mm=tolerance_mm)
    labels = mask_labels(match.apply(mask.array), path=path)
    return Volume(array=labels, affine=like.affine,
                  provenance=Provenance(source=str(path), kind="nifti", file_count=1,
                                        extra={"reoriented": not match.is_identity}))


def load_timepoint_mask(tp: Timepoint, *, like: Volume, roi: str | re.Pattern[str] | None = None
                        ) -> Volume | None:
    """The lesion mask of ``tp`` on the grid of its loaded image ``like`` (None: no mask).

    A NIfTI mask goes through :func:`load_mask`; a SEG or RTSTRUCT that discovery attached is
    read onto the image grid by :func:`medseq.dicom_objects.attach.load_annotation`, keeping
    the segments or ROIs ``roi`` selects (regular expression on SegmentLabel / ROIName,
    case-insensitive; None: all), one label each. Overlap warnings are kept in the
    provenance (``extra["warnings"]``).

    Raises:
        NiftiError: the NIfTI mask cannot be used on this image.
        AnnotationError: the SEG or RTSTRUCT gives no mask on this image (one line, the file).
    """
    if tp.mask is None:
        return None
    if not tp.mask_source.is_dicom_object:
        return load_mask(tp.mask, like=like)
    from medseq.dicom_objects.attach import AnnotationObject, load_annotation
    from medseq.dicom_objects.labels import compile_roi_pattern

    pattern = compile_roi_pattern(roi) if isinstance(roi, str) else roi
    obj = AnnotationObject(path=Path(tp.mask), kind=tp.mask_source.value,
                           series_uids=(tp.image.series_uid,) if tp.image.series_uid else (),
                           frame_of_reference_uid=tp.image.frame_of_reference_uid or "")
    labels = load_annotation(obj, like, frame_of_reference_uid=obj.frame_of_reference_uid,
                             roi=pattern)
    return Volume(array=labels.array, affine=like.affine,
                  provenance=Provenance(source=str(tp.mask), kind=tp.mask_source.value.lower(),
                                        file_count=1,
                                        extra={"labels": [lab.name for lab in labels.labels],
                                               "warnings": list(labels.warnings)}))
