"""Records that discovery produces: a Cohort of Patients, each with Timepoints in date order.

Discovery reads headers only; these records say where the pixels are, and
:func:`medseq.io.load.load_image` turns a :class:`SeriesInfo` into a
:class:`~medseq.io.volume.Volume`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


class Layout(str, Enum):
    """The input layouts ``discover`` understands."""

    DICOM = "dicom"
    NIFTI = "nifti"
    MANIFEST = "manifest"


class ImageFormat(str, Enum):
    """How one timepoint's image is stored."""

    DICOM = "dicom"
    NIFTI = "nifti"


class MaskSource(str, Enum):
    """Where a timepoint's lesion mask comes from."""

    NIFTI = "nifti"
    SEG = "SEG"
    """A DICOM Segmentation referencing the timepoint's image series."""
    RTSTRUCT = "RTSTRUCT"
    """A DICOM RT structure set referencing the timepoint's image series."""
    NONE = "none"

    @property
    def is_dicom_object(self) -> bool:
        """A SEG or RTSTRUCT (read by :mod:`medseq.dicom_objects`), not a NIfTI label map."""
        return self in (MaskSource.SEG, MaskSource.RTSTRUCT)


@dataclass(frozen=True)
class SeriesInfo:
    """One image series chosen for a timepoint, described from headers only."""

    format: ImageFormat
    files: tuple[Path, ...]
    """DICOM instance files of the series (deduplicated), or the single NIfTI file."""
    series_uid: str | None = None
    description: str = ""
    modality: str = ""
    shape: tuple[int, int, int] | None = None
    spacing: tuple[float, float, float] | None = None
    affine: tuple[tuple[float, ...], ...] | None = None
    """4x4 voxel-to-RAS+ affine, when the headers give it."""
    frame_of_reference_uid: str | None = None
    """FrameOfReferenceUID of a DICOM series (a SEG or RTSTRUCT mask must be on it)."""

    @property
    def file_count(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class Timepoint:
    """One scan of a patient: a study (DICOM), a folder (NIfTI) or a manifest row."""

    name: str
    date: dt.date | None
    days: int | None
    """Days from the patient's baseline (first) scan; ``None`` when undated."""
    image: SeriesInfo
    mask: Path | None = None
    """A NIfTI label map, or the SEG or RTSTRUCT file discovery attached (see ``mask_source``)."""
    study_uid: str | None = None
    mask_source: MaskSource = MaskSource.NONE
    """What ``mask`` is; left at NONE with a mask given, it is taken for NIfTI."""

    def __post_init__(self) -> None:
        if self.mask is None:
            object.__setattr__(self, "mask_source", MaskSource.NONE)
        elif self.mask_source is MaskSource.NONE:
            object.__setattr__(self, "mask_source", MaskSource.NIFTI)


@dataclass(frozen=True)
class Patient:
    """A patient's timepoints, in date order (baseline first)."""

    patient_id: str
    timepoints: tuple[Timepoint, ...]
    label: int | None = None


class SkipKind(str, Enum):
    """What a :class:`Skipped` entry leaves out."""

    FILE = "file"
    FOLDER = "folder"
    SERIES = "series"
    STUDY = "study"
    PATIENT = "patient"
    ROW = "row"
    """A manifest row."""


@dataclass(frozen=True)
class Skipped:
    """A file, series or patient that discovery left out, and why."""

    path: str
    reason: str
    patient_id: str | None = None
    kind: SkipKind = SkipKind.FILE


@dataclass(frozen=True)
class Cohort:
    """Everything discovery found under one input path."""

    layout: Layout
    root: Path
    patients: tuple[Patient, ...]
    skipped: tuple[Skipped, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def patient(self, patient_id: str) -> Patient:
        """The patient with this ID (``KeyError`` if absent)."""
        for patient in self.patients:
            if patient.patient_id == patient_id:
                return patient
        raise KeyError(patient_id)
