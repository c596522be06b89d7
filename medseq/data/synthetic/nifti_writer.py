"""Byte-for-byte reproducible ``.nii.gz`` files (gzip without a timestamp), written atomically."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

GZIP_LEVEL = 6
"""gzip level for masks (they compress 400:1, fast at any level) and for ``small`` images."""
IMAGE_GZIP_LEVEL = 1
"""gzip level for larger images: noisy CT gains about 2% from level 6 at 3x the time."""


def nifti_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    """Uncompressed NIfTI-1 bytes of ``array`` with ``affine`` as both qform and sform."""
    import nibabel as nib

    image = nib.Nifti1Image(array, affine)
    header = image.header
    header.set_xyzt_units("mm", "sec")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    header["descrip"] = b"medseq synthetic"
    return bytes(image.to_bytes())


def write_nifti(
    path: Path, array: np.ndarray, affine: np.ndarray, *, level: int = GZIP_LEVEL
) -> None:
    """Write ``array`` (kept in its dtype) as gzip-compressed NIfTI with a zero gzip mtime."""
    data = gzip.compress(nifti_bytes(array, affine), compresslevel=level, mtime=0)
    write_atomic(path, data)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path`` under a temporary name, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
