"""What one timepoint's SR and SEG say: the records :mod:`.export` fills and the writers read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LesionReport:
    """One tracked lesion at one timepoint."""

    track_id: str
    """``L1``, ``L2``...: the TrackingIdentifier, the same at every timepoint."""
    tracking_uid: str
    """The TrackingUID, the same at every timepoint."""
    status: str
    """``tracked``, ``new``, ``split``, ``merged`` or ``vanished`` (``lesions.csv``)."""
    longest_diameter_mm: float | None
    short_axis_mm: float | None
    volume_ml: float | None
    segment: int | None = None
    """Its segment number in this timepoint's SEG; None when it has no voxels of its own."""
    target: bool = False


@dataclass(frozen=True)
class TimepointReport:
    """Everything one timepoint's SR reports."""

    patient_key: str
    """The patient's pseudonymous (cache) id: keys the derived UIDs."""
    index: int
    """Timepoint number, 0 = baseline."""
    days: int
    """Days from the baseline scan."""
    lesions: tuple[LesionReport, ...]
    response: str | None = None
    """RECIST 1.1 category of a follow-up (CR, PR, SD, PD, NE); None at baseline."""
    sod_mm: float | None = None
    """Sum of the target lesions' diameters."""
    modality: str = "CT"
