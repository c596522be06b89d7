"""Turn what discovery found into voxels: a timepoint's image and its mask.

Example:
    >>> image = load_image(timepoint.image)
    >>> mask = load_mask(timepoint.mask, like=image) if timepoint.mask else None
"""

from __future__ import annotations

from pathlib import Path

from medseq.errors import DicomError
from medseq.io.cohort import ImageFormat, SeriesInfo
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
