"""Write a synthetic scan as a PACS export would hold it: one CT series, maybe a localizer.

Every file gets a random (but seed-determined) name, some without an extension, in a randomly
named folder per study and per series. UIDs come from :func:`pydicom.uid.generate_uid` with
entropy from the seed, patient and scan, so the same seed writes the same bytes.
"""

from __future__ import annotations

import datetime as dt
import io
import string
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medseq.data.synthetic.geometry import Grid
from medseq.data.synthetic.nifti_writer import write_atomic

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

COMPRESSIONS = ("none", "rle", "jpeg2000")
"""DICOM pixel encodings: uncompressed, RLE Lossless, JPEG 2000 Lossless."""
INSTITUTION = "Synthetic General Hospital"
_GIVEN = ("ANNA", "JOHN", "MARIA", "PETER", "SARA", "DAVID", "LINA", "OMAR", "GRACE", "IVAN")
_FAMILY = ("DOE", "SMITH", "NOVAK", "GARCIA", "MULLER", "ROSSI", "TANAKA", "OKAFOR", "BERG")


@dataclass(frozen=True)
class PatientHeader:
    """Identifying (fake) patient data that medseq must never leak into its outputs."""

    patient_id: str
    name: str
    birth_date: str
    sex: str


@dataclass(frozen=True)
class StudyHeader:
    """One timepoint's study-level DICOM attributes."""

    study_uid: str
    frame_uid: str
    accession: str
    date: dt.date
    minutes: int
    """Minutes after 07:00 at which the scan started."""
    study_id: str


def fake_patient(rng: np.random.Generator, patient_id: str) -> PatientHeader:
    """Draw a fake name, birth date and sex."""
    born = dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 40 * 365)))
    return PatientHeader(
        patient_id=patient_id,
        name=f"{rng.choice(_FAMILY)}^{rng.choice(_GIVEN)}",
        birth_date=born.strftime("%Y%m%d"),
        sex=str(rng.choice(["F", "M"])),
    )


def random_name(rng: np.random.Generator, length: int = 8) -> str:
    """A random upper-case alphanumeric name."""
    alphabet = np.array(list(string.ascii_uppercase + string.digits))
    return "".join(rng.choice(alphabet, length))


def uid(*parts: object) -> str:
    """A deterministic UID from ``parts``."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["medseq-synthetic", *(str(p) for p in parts)]))


def write_ct_series(
    folder: Path,
    hu: np.ndarray,
    grid: Grid,
    *,
    patient: PatientHeader,
    study: StudyHeader,
    series_uid: str,
    series_number: int,
    signed: bool,
    compression: str,
    rng: np.random.Generator,
) -> list[Path]:
    """Write ``hu`` (int16 HU, ``array[i, j, k]`` on an LPS-aligned grid) as one file per slice.

    The static part of the header is encoded once by pydicom; each slice splices in its own
    SOP Instance UID, Instance Number, position and pixels (pydicom's per-file writer costs
    ~15 ms a file, which dominated generation).
    """
    sx, sy, sz = grid.spacing
    nx, ny, nz = grid.shape
    ds = _base_dataset(patient, study, modality_type="AXIAL")
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = f"Abdomen {sz:.1f} B30f"
    ds.SliceThickness = f"{sz:.6g}"
    ds.SpacingBetweenSlices = f"{sz:.6g}"
    ds.ConvolutionKernel = "B30f"
    ds.KVP = "120"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [f"{sy:.10g}", f"{sx:.10g}"]
    ds.Rows, ds.Columns = ny, nx
    ds.BitsAllocated = 16
    ds.BitsStored = 16 if signed else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    encoder = _SliceEncoder(ds, compression)
    # Grid affine (RAS+) is diag(-sx, -sy, sz): LPS position of voxel (0, 0, k) below.
    x0, y0 = -grid.affine[0, 3], -grid.affine[1, 3]
    dtype = np.int16 if signed else np.uint16
    stored = (hu.astype(np.int32) + 1024).clip(0, 4095).astype(dtype)
    extension = rng.choice(["", ".dcm", "mixed"])
    paths = []
    for k in range(nz):
        z = grid.affine[2, 2] * k + grid.affine[2, 3]
        data = encoder.encode(
            sop_uid=uid(series_uid, k),
            instance_number=nz - k,  # Instance numbers count from the head, as scanners do.
            position=(x0, y0, z),
            pixels=np.ascontiguousarray(stored[:, :, k].T),
        )
        ext = extension if extension != "mixed" else rng.choice(["", ".dcm", ".DCM"])
        path = folder / f"{random_name(rng)}{ext}"
        write_atomic(path, data)
        paths.append(path)
    return paths


_VARYING = (0x00080018, 0x00200013, 0x00200032, 0x00201041, 0x7FE00010)
"""Tags that change from slice to slice (SOP Instance UID, Instance Number, Image Position,
Slice Location, Pixel Data), in ascending order."""
_LONG_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "SQ", "UT", "UN", "UC", "UR", "SV", "UV"}
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.8.498.1"
"""Implementation Class UID written in the file meta (pydicom's root; fixed, so the bytes do not
depend on the installed pydicom version)."""
IMPLEMENTATION_NAME = "MEDSEQ_SYNTH"


class _SliceEncoder:
    """Explicit VR little-endian Part 10 bytes for the slices of one series."""

    def __init__(self, ds: Dataset, compression: str) -> None:
        from pydicom.dataset import Dataset as PydicomDataset
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_dataset
        from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

        self.compression = compression
        self.syntax = {
            "none": ExplicitVRLittleEndian, "rle": RLELossless, "jpeg2000": JPEG2000Lossless,
        }[compression]
        self.sop_class = str(ds.SOPClassUID)
        self.pixel_args: dict[str, Any] = {
            "rows": int(ds.Rows), "columns": int(ds.Columns), "number_of_frames": 1,
            "samples_per_pixel": 1, "bits_allocated": 16, "bits_stored": int(ds.BitsStored),
            "pixel_representation": int(ds.PixelRepresentation),
            "photometric_interpretation": "MONOCHROME2",
        }
        tags = sorted(int(elem.tag) for elem in ds)
        bounds = [*_VARYING, 0x100000000]
        self.segments: list[bytes] = []
        low = 0
        for high in bounds:
            part = PydicomDataset()
            for tag in tags:
                if low <= tag < high:
                    part[tag] = ds[tag]
            fp = DicomBytesIO()
            fp.is_little_endian = True
            fp.is_implicit_VR = False
            write_dataset(fp, part)
            self.segments.append(fp.getvalue())
            low = high + 1

    def encode(
        self,
        *,
        sop_uid: str,
        instance_number: int,
        position: tuple[float, float, float],
        pixels: np.ndarray,
    ) -> bytes:
        """The whole file for one slice."""
        position_text = "\\".join(f"{v:.6f}" for v in position)
        varying = [
            _element(0x00080018, "UI", sop_uid),
            _element(0x00200013, "IS", str(instance_number)),
            _element(0x00200032, "DS", position_text),
            _element(0x00201041, "DS", f"{position[2]:.6f}"),
            self._pixel_element(pixels),
        ]
        body = [self.segments[0]]
        for element, segment in zip(varying, self.segments[1:], strict=True):
            body += [element, segment]
        return _file_meta(self.sop_class, sop_uid, self.syntax) + b"".join(body)

    def _pixel_element(self, pixels: np.ndarray) -> bytes:
        if self.compression == "none":
            return _element(0x7FE00010, "OW", pixels.astype("<" + pixels.dtype.str[1:]).tobytes())
        from pydicom.encaps import encapsulate
        from pydicom.pixels import get_encoder

        frame = get_encoder(self.syntax).encode(
            pixels, encoding_plugin="pylibjpeg", **self.pixel_args
        )
        header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF)
        delimiter = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        return header + encapsulate([frame], has_bot=False) + delimiter


def _element(tag: int, vr: str, value: str | bytes) -> bytes:
    """One explicit VR little-endian element."""
    if isinstance(value, str):
        raw = value.encode("ascii")
        if len(raw) % 2:
            raw += b"\0" if vr == "UI" else b" "
    else:
        raw = value + (b"\0" if len(value) % 2 else b"")
    group, elem = tag >> 16, tag & 0xFFFF
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", group, elem, vr.encode(), 0, len(raw)) + raw
    return struct.pack("<HH2sH", group, elem, vr.encode(), len(raw)) + raw


def _file_meta(sop_class: str, sop_uid: str, syntax: str) -> bytes:
    """Preamble, ``DICM`` and the group 0002 file meta information."""
    body = b"".join([
        _element(0x00020001, "OB", b"\x00\x01"),
        _element(0x00020002, "UI", sop_class),
        _element(0x00020003, "UI", sop_uid),
        _element(0x00020010, "UI", str(syntax)),
        _element(0x00020012, "UI", IMPLEMENTATION_UID),
        _element(0x00020013, "SH", IMPLEMENTATION_NAME),
    ])
    length = _element(0x00020000, "UL", struct.pack("<I", len(body)))
    return b"\0" * 128 + b"DICM" + length + body


def write_localizer(
    folder: Path,
    hu: np.ndarray,
    grid: Grid,
    *,
    patient: PatientHeader,
    study: StudyHeader,
    series_uid: str,
    rng: np.random.Generator,
) -> Path:
    """A frontal localizer (topogram) made by projecting the volume front to back."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    sx, _, sz = grid.spacing
    nz = grid.shape[2]
    attenuation = (hu.astype(np.float32) + 1000.0).clip(0, None).mean(axis=1)  # (i, k)
    image = np.clip(attenuation * 3.0, 0, 4095).astype(np.uint16)[:, ::-1].T  # rows from head
    ds = _base_dataset(patient, study, modality_type="LOCALIZER")
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.SeriesDescription = "Topogram 0.6 T20f"
    ds.SOPInstanceUID = uid(series_uid, 0)
    ds.InstanceNumber = 1
    z_top = grid.affine[2, 2] * (nz - 1) + grid.affine[2, 3]
    ds.ImagePositionPatient = [f"{-grid.affine[0, 3]:.6f}", "0", f"{z_top:.6f}"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.PixelSpacing = [f"{sz:.10g}", f"{sx:.10g}"]
    ds.SliceThickness = "0.6"
    ds.KVP = "120"
    ds.Rows, ds.Columns = image.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = "2048"
    ds.WindowWidth = "4096"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.PixelData = np.ascontiguousarray(image).tobytes()
    return _write(folder / random_name(rng), ds)


def _base_dataset(patient: PatientHeader, study: StudyHeader, *, modality_type: str) -> Dataset:
    from pydicom.dataset import Dataset
    from pydicom.uid import CTImageStorage

    start = dt.datetime.combine(study.date, dt.time(7, 0)) + dt.timedelta(minutes=study.minutes)
    acq = start + dt.timedelta(minutes=2 if modality_type == "AXIAL" else 1)
    date = study.date.strftime("%Y%m%d")
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", modality_type]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = start.strftime("%H%M%S")
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = acq.strftime("%H%M%S")
    ds.AccessionNumber = study.accession
    ds.Modality = "CT"
    ds.Manufacturer = "medseq synthetic"
    ds.InstitutionName = INSTITUTION
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CT CHEST ABDOMEN W CONTRAST"
    ds.ManufacturerModelName = "Phantom CT"
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    born = dt.datetime.strptime(patient.birth_date, "%Y%m%d").date()
    ds.PatientAge = f"{(study.date - born).days // 365:03d}Y"
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study.study_uid
    ds.StudyID = study.study_id
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = study.frame_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    return ds


def _write(path: Path, ds: Dataset) -> Path:
    from pydicom import dcmwrite

    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)  # type: ignore[arg-type]
    write_atomic(path, buffer.getvalue())
    return path
