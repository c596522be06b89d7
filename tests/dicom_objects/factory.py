"""Write the DICOM objects the tests read: CT series, RTSTRUCTs (pydicom), SEGs (highdicom).

Everything is made here at test time; nothing is checked in. Conventions of
:mod:`tests.dicom_factory` hold: ``shape`` is ``(columns, rows, slices)`` and a Volume loaded
from the series has ``array[i, j, k]`` with the affine :func:`lps_affine_ras` gives.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medseq.dicom_objects.grid import ImageGrid
from tests.dicom_factory import lps_affine_ras, write_series

SPACING = (0.5, 0.5, 1.0)
SHAPE = (48, 44, 14)
ORIGIN = (-12.0, -11.0, 40.0)
ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def write_ct(folder: Path, *, shape: tuple[int, int, int] = SHAPE,
             spacing: tuple[float, float, float] = SPACING,
             origin: Sequence[float] = ORIGIN, orientation: Sequence[float] = ORIENTATION,
             **kwargs: Any) -> tuple[list[Path], ImageGrid]:
    """A small CT series and its grid (RAS+ affine, series and frame of reference UIDs)."""
    pixels = np.zeros(shape, dtype=np.int16)
    paths = write_series(folder, shape=shape, spacing=spacing, origin=origin,
                         orientation=orientation, pixels=pixels, **kwargs)
    first = pydicom.dcmread(paths[0], stop_before_pixels=True)
    affine = lps_affine_ras(spacing=spacing, orientation=orientation, origin=origin)
    return paths, ImageGrid(shape=shape, affine=affine, series_uid=str(first.SeriesInstanceUID),
                            frame_of_reference_uid=str(first.FrameOfReferenceUID))


def voxel_centres_lps(grid: ImageGrid) -> np.ndarray:
    """LPS mm of every voxel centre, shape ``grid.shape + (3,)``."""
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij"), axis=-1)
    ras = idx @ grid.affine[:3, :3].T + grid.affine[:3, 3]
    return ras * np.array([-1.0, -1.0, 1.0])


def circle(centre_lps: Sequence[float], radius: float, *, points: int = 96,
           clockwise: bool = False) -> np.ndarray:
    """An axial polygon (``points`` x 3, LPS) around ``centre_lps``."""
    angles = np.linspace(0.0, 2 * np.pi, points, endpoint=False)
    if clockwise:
        angles = angles[::-1]
    cx, cy, cz = centre_lps
    return np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles),
                     np.full(points, cz)], axis=1)


def write_rtstruct(path: Path, image_paths: Sequence[Path],
                   rois: dict[str, list[np.ndarray | tuple[str, np.ndarray]]], *,
                   frame_uid: str | None = None, series_uid: str | None = None) -> Path:
    """An RTSTRUCT over the series of ``image_paths``: ROI name -> contours (LPS points).

    A contour is an ``(N, 3)`` array (CLOSED_PLANAR) or ``(type, array)``.
    """
    image = pydicom.dcmread(image_paths[0], stop_before_pixels=True)
    frame_uid = frame_uid or str(image.FrameOfReferenceUID)
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "RTSTRUCT"
    for keyword in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex",
                    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber"):
        setattr(ds, keyword, image.get(keyword, ""))
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 99
    ds.StructureSetLabel = "lesions"
    ds.StructureSetDate = image.StudyDate
    ds.StructureSetTime = "120000"
    series_item = Dataset()
    series_item.SeriesInstanceUID = series_uid or str(image.SeriesInstanceUID)
    series_item.ContourImageSequence = DicomSequence([_image_ref(p) for p in image_paths])
    study_item = Dataset()
    study_item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study_item.ReferencedSOPInstanceUID = str(image.StudyInstanceUID)
    study_item.RTReferencedSeriesSequence = DicomSequence([series_item])
    frame_item = Dataset()
    frame_item.FrameOfReferenceUID = frame_uid
    frame_item.RTReferencedStudySequence = DicomSequence([study_item])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame_item])
    roi_items, contour_items = [], []
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi_item = Dataset()
        roi_item.ROINumber = number
        roi_item.ReferencedFrameOfReferenceUID = frame_uid
        roi_item.ROIName = name
        roi_item.ROIGenerationAlgorithm = "MANUAL"
        roi_items.append(roi_item)
        contour_item = Dataset()
        contour_item.ReferencedROINumber = number
        contour_item.ROIDisplayColor = [255, 0, 0]
        sequence = []
        for contour in contours:
            kind, points = contour if isinstance(contour, tuple) else ("CLOSED_PLANAR", contour)
            item = Dataset()
            item.ContourGeometricType = kind
            item.NumberOfContourPoints = len(points)
            item.ContourData = [f"{v:.6f}" for v in np.asarray(points).ravel()]
            sequence.append(item)
        if sequence:
            contour_item.ContourSequence = DicomSequence(sequence)
        contour_items.append(contour_item)
    ds.StructureSetROISequence = DicomSequence(roi_items)
    ds.ROIContourSequence = DicomSequence(contour_items)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_input_seg(path: Path, image_paths: Sequence[Path], layers: Sequence[np.ndarray],
                    names: Sequence[str], *, fractional: bool = False,
                    labelmap: bool = False) -> Path:
    """A SEG made with highdicom directly: one segment per boolean ``(i, j, k)`` layer."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    sources = [pydicom.dcmread(p) for p in image_paths]
    # Frames follow the sources: pixel [row, column] of slice k is array[column, row, k].
    stacked = np.stack([np.stack([layer[:, :, k].T for layer in layers], axis=-1)
                        for k in range(len(sources))])
    descriptions = [hd.seg.SegmentDescription(
        segment_number=n, segment_label=name,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for n, name in enumerate(names, start=1)]
    kind = hd.seg.SegmentationTypeValues.BINARY
    pixels: np.ndarray = stacked
    if fractional:
        kind, pixels = hd.seg.SegmentationTypeValues.FRACTIONAL, stacked.astype(np.float32)
    elif labelmap:  # one value per voxel: the highest segment drawn there
        kind = hd.seg.SegmentationTypeValues.LABELMAP
        pixels = (stacked * np.arange(1, stacked.shape[-1] + 1)).max(axis=-1).astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=kind,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(),
        series_number=50, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="tests", manufacturer_model_name="tests", software_versions="1",
        device_serial_number="1")
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path


def dciodvfy_errors(path: Path) -> tuple[list[str], list[str]]:
    """``(error lines, warning lines)`` of David Clunie's dciodvfy on ``path``.

    Skips the test where dciodvfy is missing, except in CI (.ci/run installs dicom3tools).
    """
    tool = shutil.which("dciodvfy")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("dciodvfy is not installed (apt-get install dicom3tools)")
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    result = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60,
                            check=False)
    lines = (result.stdout + result.stderr).splitlines()
    return ([line for line in lines if line.startswith("Error")],
            [line for line in lines if line.startswith("Warning")])


def _image_ref(path: Path) -> Dataset:
    image = pydicom.dcmread(path, stop_before_pixels=True)
    item = Dataset()
    item.ReferencedSOPClassUID = image.SOPClassUID
    item.ReferencedSOPInstanceUID = image.SOPInstanceUID
    return item
