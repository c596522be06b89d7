"""Write realistic DICOM series to disk for tests (pydicom only, no fixtures checked in).

Conventions, chosen to match :class:`medseq.io.volume.Volume`:

- ``shape`` is ``(columns, rows, slices)``, i.e. the ``(i, j, k)`` order of ``Volume.array``;
  ``pixels[i, j, k]`` is the *stored* value (before RescaleSlope/Intercept) of column ``i``,
  row ``j`` of slice ``k``.
- ``spacing`` is ``(along rows, along columns, between slices)`` in mm, again in ``(i, j, k)``
  order, so DICOM ``PixelSpacing`` is ``[spacing[1], spacing[0]]``.
- ``orientation`` is the six ImageOrientationPatient values (row cosines, then column cosines)
  and ``origin`` the LPS ImagePositionPatient of slice 0; slice ``k`` sits at
  ``origin + offsets[k] * normal`` with ``normal = row x column`` (or, for ``tilt_degrees``,
  along the table axis while the image planes tilt, as a tilted CT gantry produces).

:func:`write_series` returns the written paths in slice order (``paths[k]`` holds slice ``k``),
whatever names and on-disk order were used. :func:`lps_affine_ras` gives the expected voxel to
RAS+ affine for untilted series.

Example:
    >>> paths = write_series(tmp_path / "ct", shape=(8, 6, 5), spacing=(0.7, 0.7, 2.5))
"""

from __future__ import annotations

import datetime as _dt
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    MRImageStorage,
    PositronEmissionTomographyImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

__all__ = [
    "default_pixels",
    "lps_affine_ras",
    "slice_positions",
    "write_enhanced",
    "write_series",
]

UNCOMPRESSED = (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                DeflatedExplicitVRLittleEndian)
"""Transfer syntaxes :func:`write_series` writes natively; RLELossless and JPEG2000Lossless are
encoded with pydicom's encoders (pylibjpeg-openjpeg for JPEG 2000)."""

_SOP_CLASS = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "PT": PositronEmissionTomographyImageStorage,
}

Edit = Callable[[int, Dataset], None]
"""A per-slice hook ``edit(k, ds)`` that may change any element before the file is written."""


def default_pixels(shape: tuple[int, int, int], *, signed: bool = True, seed: int = 0
                   ) -> np.ndarray:
    """Stored values with structure (a gradient, a bright ball) plus noise, distinct per slice."""
    rng = np.random.default_rng(seed)
    i, j, k = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    centre = np.asarray(shape) / 2.0
    ball = ((i - centre[0]) ** 2 + (j - centre[1]) ** 2 + (k - centre[2]) ** 2) < (
        min(shape) / 3.0) ** 2
    values = 40 * i + 7 * j + 300 * k + 900 * ball + rng.integers(0, 50, size=shape)
    values = values % 4000  # stays inside 12 bits
    if signed:
        values = values - 1500
    return values.astype(np.int16 if signed else np.uint16)


def make_colour(ds: Dataset) -> None:
    """Turn a written slice into an 8-bit RGB image (what medseq refuses from headers)."""
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.zeros((int(ds.Rows), int(ds.Columns), 3), np.uint8).tobytes()


def slice_positions(*, count: int, spacing: float, orientation: Sequence[float],
                    origin: Sequence[float], offsets: Sequence[float] | None = None,
                    tilt_degrees: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """LPS positions (count x 3) and the IOP actually written (6,) for each slice.

    With ``tilt_degrees`` the column cosine is turned about the row direction by the tilt while
    slices still step along the untilted normal (the table axis), so the stack is sheared.
    """
    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:], dtype=float)
    normal = np.cross(row, col)
    if offsets is None:
        offsets = [k * spacing for k in range(count)]
    steps = np.asarray(offsets, dtype=float)[:, None] * normal[None, :]
    if tilt_degrees:
        t = np.deg2rad(tilt_degrees)
        col = np.cos(t) * col + np.sin(t) * normal
    return np.asarray(origin, dtype=float)[None, :] + steps, np.concatenate([row, col])


def lps_affine_ras(*, spacing: Sequence[float], orientation: Sequence[float],
                   origin: Sequence[float]) -> np.ndarray:
    """Expected voxel (i, j, k) -> RAS+ affine of an untilted series written by this module."""
    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:], dtype=float)
    normal = np.cross(row, col)
    affine = np.eye(4)
    affine[:3, 0] = row * spacing[0]
    affine[:3, 1] = col * spacing[1]
    affine[:3, 2] = normal * spacing[2]
    affine[:3, 3] = origin
    affine[:2, :] *= -1.0
    return affine


def write_series(
    folder: Path | str,
    *,
    shape: tuple[int, int, int] = (16, 12, 6),
    spacing: tuple[float, float, float] = (0.8, 0.8, 2.5),
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    origin: Sequence[float] = (-50.0, -40.0, 100.0),
    offsets: Sequence[float] | None = None,
    tilt_degrees: float = 0.0,
    pixels: np.ndarray | None = None,
    rescale_slope: float | None = 1.0,
    rescale_intercept: float | None = -1024.0,
    signed: bool = True,
    bits_stored: int = 16,
    modality: str = "CT",
    patient_id: str = "PAT001",
    patient_name: str = "Test^Patient",
    study_uid: str | None = None,
    series_uid: str | None = None,
    study_date: str = "20240115",
    series_description: str = "AXIAL 2.5",
    series_number: int = 2,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    naming: str = "instance",
    shuffle: bool = False,
    preamble: bool = True,
    transfer_syntax: str = ExplicitVRLittleEndian,
    instance_numbers: Sequence[int] | None = None,
    sop_instance_uids: Sequence[str] | None = None,
    extra: dict[str, Any] | None = None,
    edit: Edit | None = None,
    seed: int = 0,
) -> list[Path]:
    """Write one single-frame series, a file per slice, and return the paths in slice order.

    Args:
        folder: Created if missing; files go straight into it.
        shape: ``(columns, rows, slices)``.
        spacing: ``(along rows, along columns, between slices)`` in mm.
        orientation: ImageOrientationPatient (6 values).
        origin: LPS ImagePositionPatient of slice 0.
        offsets: Slice positions along the normal in mm (default ``k * spacing[2]``); use it for
            gaps, uneven spacing or duplicated positions.
        tilt_degrees: Gantry tilt; also written to GantryDetectorTilt.
        pixels: Stored values in ``(i, j, k)`` order (default :func:`default_pixels`).
        rescale_slope: RescaleSlope, or ``None`` to omit the tag (with the intercept).
        rescale_intercept: RescaleIntercept, or ``None`` to omit.
        signed: PixelRepresentation 1 (int16) or 0 (uint16).
        bits_stored: BitsStored (BitsAllocated is 16).
        modality: ``CT``, ``MR``, ``PT`` (sets the SOP class) or anything else (secondary capture).
        patient_id: PatientID.
        patient_name: PatientName.
        study_uid: StudyInstanceUID (generated when ``None``).
        series_uid: SeriesInstanceUID (generated when ``None``).
        study_date: StudyDate and AcquisitionDate (``YYYYMMDD``).
        series_description: SeriesDescription.
        series_number: SeriesNumber.
        image_type: ImageType values.
        naming: ``instance`` (``IM00001.dcm``), ``random`` (hex names with ``.dcm``), ``none``
            (hex names without an extension).
        shuffle: Assign instance numbers and names in a random order unrelated to position.
        preamble: ``False`` writes neither the 128-byte preamble, ``DICM`` nor file meta.
        transfer_syntax: One of :data:`UNCOMPRESSED`, ``RLELossless`` or ``JPEG2000Lossless``
            (JPEG 2000 needs at least 32 pixels a side; ``preamble=False`` needs an
            uncompressed, non-deflated syntax).
        instance_numbers: InstanceNumber per slice (default 1..n, shuffled when ``shuffle``).
        sop_instance_uids: SOPInstanceUID per slice (generated when ``None``).
        extra: Element keyword -> value set on every slice.
        edit: Per-slice hook ``edit(k, ds)`` run last, for broken-series cases.
        seed: Seeds pixels, shuffling and random names.
    """
    if not preamble and transfer_syntax not in (ImplicitVRLittleEndian, ExplicitVRLittleEndian,
                                                ExplicitVRBigEndian):
        raise ValueError("preamble=False writes no file meta, so the transfer syntax must be "
                         "uncompressed and not deflated")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cols, rows, count = shape
    rng = random.Random(seed)
    if pixels is None:
        pixels = default_pixels(shape, signed=signed, seed=seed)
    if pixels.shape != tuple(shape):
        raise ValueError(f"pixels has shape {pixels.shape}, expected {tuple(shape)}")
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = generate_uid()
    positions, iop = slice_positions(count=count, spacing=spacing[2], orientation=orientation,
                                     origin=origin, offsets=offsets, tilt_degrees=tilt_degrees)
    order = list(range(count))
    if shuffle:
        rng.shuffle(order)
    if instance_numbers is None:
        instance_numbers = [order.index(k) + 1 for k in range(count)]
    names = _file_names(count, naming=naming, rng=rng, instance_numbers=instance_numbers)
    sop_class = _SOP_CLASS.get(modality, SecondaryCaptureImageStorage)
    paths: list[Path] = []
    for k in range(count):
        ds = _base_dataset(sop_class=sop_class, modality=modality, patient_id=patient_id,
                           patient_name=patient_name, study_uid=study_uid,
                           series_uid=series_uid, study_date=study_date,
                           series_description=series_description,
                           series_number=series_number, frame_uid=frame_uid)
        ds.SOPInstanceUID = sop_instance_uids[k] if sop_instance_uids else generate_uid()
        ds.InstanceNumber = int(instance_numbers[k])
        ds.ImageType = list(image_type)
        ds.ImagePositionPatient = [_ds(v) for v in positions[k]]
        ds.ImageOrientationPatient = [_ds(v) for v in iop]
        ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]
        ds.SliceThickness = _ds(spacing[2])
        ds.SliceLocation = _ds(float(positions[k] @ np.cross(iop[:3], iop[3:])))
        if tilt_degrees:
            ds.GantryDetectorTilt = _ds(tilt_degrees)
        _set_pixels(ds, pixels[:, :, k].T, rows=rows, cols=cols, signed=signed,
                    bits_stored=bits_stored)
        if rescale_slope is not None:
            ds.RescaleSlope = _ds(rescale_slope)
        if rescale_intercept is not None:
            ds.RescaleIntercept = _ds(rescale_intercept)
            if modality == "CT":
                ds.RescaleType = "HU"
        for keyword, value in (extra or {}).items():
            setattr(ds, keyword, value)
        if edit is not None:
            edit(k, ds)
        path = folder / names[k]
        _save(ds, path, transfer_syntax=transfer_syntax, preamble=preamble)
        paths.append(path)
    return paths


def write_enhanced(
    path: Path | str,
    *,
    shape: tuple[int, int, int] = (16, 12, 6),
    spacing: tuple[float, float, float] = (0.8, 0.8, 2.5),
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    origin: Sequence[float] = (-50.0, -40.0, 100.0),
    pixels: np.ndarray | None = None,
    modality: str = "CT",
    rescale_slope: float = 1.0,
    rescale_intercept: float = -1024.0,
    signed: bool = True,
    frame_order: Sequence[int] | None = None,
    orientation_per_frame: bool = False,
    measures_per_frame: bool = False,
    patient_id: str = "PAT001",
    study_uid: str | None = None,
    series_uid: str | None = None,
    study_date: str = "20240115",
    series_description: str = "ENHANCED",
    transfer_syntax: str = ExplicitVRLittleEndian,
    seed: int = 0,
) -> Path:
    """Write one enhanced multi-frame CT or MR file and return its path.

    ``frame_order[f]`` is the slice stored as frame ``f`` (default in slice order), so tests can
    put frames out of spatial order. Plane orientation and pixel measures go in the shared
    functional groups unless ``orientation_per_frame`` / ``measures_per_frame``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols, rows, count = shape
    if pixels is None:
        pixels = default_pixels(shape, signed=signed, seed=seed)
    frame_order = list(frame_order) if frame_order is not None else list(range(count))
    positions, iop = slice_positions(count=count, spacing=spacing[2], orientation=orientation,
                                     origin=origin)
    sop_class = EnhancedMRImageStorage if modality == "MR" else EnhancedCTImageStorage
    ds = _base_dataset(sop_class=sop_class, modality=modality, patient_id=patient_id,
                       patient_name="Test^Enhanced", study_uid=study_uid or generate_uid(),
                       series_uid=series_uid or generate_uid(), study_date=study_date,
                       series_description=series_description, series_number=3,
                       frame_uid=generate_uid())
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.NumberOfFrames = count

    def measures() -> Dataset:
        item = Dataset()
        item.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]
        item.SliceThickness = _ds(spacing[2])
        item.SpacingBetweenSlices = _ds(spacing[2])
        return item

    def plane_orientation() -> Dataset:
        item = Dataset()
        item.ImageOrientationPatient = [_ds(v) for v in iop]
        return item

    shared = Dataset()
    if not measures_per_frame:
        shared.PixelMeasuresSequence = DicomSequence([measures()])
    if not orientation_per_frame:
        shared.PlaneOrientationSequence = DicomSequence([plane_orientation()])
    transform = Dataset()
    transform.RescaleSlope = _ds(rescale_slope)
    transform.RescaleIntercept = _ds(rescale_intercept)
    transform.RescaleType = "HU" if modality == "CT" else "US"
    shared.PixelValueTransformationSequence = DicomSequence([transform])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for k in frame_order:
        item = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [_ds(v) for v in positions[k]]
        item.PlanePositionSequence = DicomSequence([position])
        if orientation_per_frame:
            item.PlaneOrientationSequence = DicomSequence([plane_orientation()])
        if measures_per_frame:
            item.PixelMeasuresSequence = DicomSequence([measures()])
        content = Dataset()
        content.InStackPositionNumber = k + 1
        content.StackID = "1"
        item.FrameContentSequence = DicomSequence([content])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    frames = np.stack([pixels[:, :, k].T for k in frame_order])  # (frames, rows, cols)
    _set_pixels(ds, frames, rows=rows, cols=cols, signed=signed, bits_stored=16)
    _save(ds, path, transfer_syntax=transfer_syntax, preamble=True)
    return path


def _base_dataset(*, sop_class: str, modality: str, patient_id: str, patient_name: str,
                  study_uid: str, series_uid: str, study_date: str, series_description: str,
                  series_number: int, frame_uid: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.AcquisitionDate = study_date
    ds.ContentDate = study_date
    ds.StudyTime = "101500"
    ds.SeriesTime = "102000"
    ds.AcquisitionTime = "102000"
    ds.ContentTime = "102000"
    ds.StudyID = "1"
    ds.AccessionNumber = "A" + _dt.date.fromisoformat(
        f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:]}").strftime("%y%m%d")
    ds.SeriesDescription = series_description
    ds.SeriesNumber = series_number
    ds.Manufacturer = "medseq-tests"
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    return ds


def _set_pixels(ds: Dataset, frames: np.ndarray, *, rows: int, cols: int, signed: bool,
                bits_stored: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    data = np.ascontiguousarray(frames, dtype=np.int16 if signed else np.uint16)
    ds.PixelData = data.tobytes()
    ds["PixelData"].VR = "OW"
    # Kept for _save: encoders and big endian need the array, not the bytes.
    ds._factory_pixels = data  # type: ignore[attr-defined]


def _save(ds: Dataset, path: Path, *, transfer_syntax: str, preamble: bool) -> None:
    data: np.ndarray = ds._factory_pixels  # type: ignore[attr-defined]
    del ds._factory_pixels  # type: ignore[attr-defined]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    if transfer_syntax in (RLELossless, JPEG2000Lossless):
        ds.compress(transfer_syntax, data, generate_instance_uid=False)
    elif transfer_syntax == ExplicitVRBigEndian:
        ds.PixelData = data.astype(data.dtype.newbyteorder(">")).tobytes()
        meta.TransferSyntaxUID = pydicom.uid.UID(transfer_syntax)
    elif transfer_syntax in UNCOMPRESSED:
        meta.TransferSyntaxUID = pydicom.uid.UID(transfer_syntax)
    else:
        raise ValueError(f"transfer_syntax {transfer_syntax!r} is not supported by the factory")
    if preamble:
        ds.save_as(path, enforce_file_format=True)
        return
    # A bare dataset: no preamble, no "DICM", no file meta, as old archives hold them.
    syntax = pydicom.uid.UID(meta.TransferSyntaxUID)
    del ds.file_meta
    ds.preamble = None
    pydicom.dcmwrite(path, ds, implicit_vr=syntax.is_implicit_VR,
                     little_endian=syntax.is_little_endian)


def _file_names(count: int, *, naming: str, rng: random.Random,
                instance_numbers: Sequence[int]) -> list[str]:
    if naming == "instance":
        return [f"IM{n:05d}.dcm" for n in instance_numbers]
    if naming in ("random", "none"):
        suffix = ".dcm" if naming == "random" else ""
        names: set[str] = set()
        while len(names) < count:
            names.add(f"{rng.getrandbits(48):012x}{suffix}")
        ordered = sorted(names)
        rng.shuffle(ordered)
        return ordered
    raise ValueError(f"naming must be 'instance', 'random' or 'none', got {naming!r}")


def _ds(value: float) -> str:
    """A DS string of at most 16 characters with as much precision as fits."""
    text = f"{float(value):.10g}"
    if len(text) > 16:
        text = f"{float(value):.8g}"
    return "0" if text == "-0" else text
