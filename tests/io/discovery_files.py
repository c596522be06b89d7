"""Small writers for discovery tests: non-image DICOM objects and NIfTI images on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

NON_IMAGE_SOP_CLASSES = {
    "SR": "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "RTSTRUCT": "1.2.840.10008.5.1.4.1.1.481.3",
    "SEG": "1.2.840.10008.5.1.4.1.1.66.4",
    "PR": "1.2.840.10008.5.1.4.1.1.11.1",
}


def write_non_image(path: Path, *, modality: str, patient_id: str = "PAT001",
                    study_uid: str | None = None, series_uid: str | None = None,
                    study_date: str = "20240115") -> Path:
    """Write a header-only SR / RTSTRUCT / SEG / PR object (no pixel data) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = Dataset()
    ds.SOPClassUID = NON_IMAGE_SOP_CLASSES[modality]
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientID = patient_id
    ds.PatientName = "Test^NonImage"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyDate = study_date
    ds.SeriesDescription = f"{modality} object"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    return path


def write_nifti(path: Path, *, shape: Sequence[int] = (6, 5, 4), affine: np.ndarray | None = None,
                dtype: type = np.int16, data: np.ndarray | None = None) -> Path:
    """Write a NIfTI image of ``shape`` (values 0..n) with ``affine`` (default 1 mm grid)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = (np.arange(int(np.prod(shape))) % 7).reshape(tuple(shape)).astype(dtype)
    if affine is None:
        affine = np.diag([0.8, 0.8, 2.5, 1.0])
        affine[:3, 3] = (-20.0, 10.0, 30.0)
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)
    return path
