"""Tracking output: ``tracks.json`` and the rows of ``lesions.csv`` and ``response.csv``.

``medseq track`` writes ``OUT/tracks.json`` (and ``CACHE/tracks.json``, the cache's stored
tracking, which later stages read instead of tracking again); the rows of the two CSV files are
the same records (:class:`LesionRow`, :class:`ResponseRow`). Floats are written rounded to four
decimals, non-finite ones as null. ``input_hash`` says what the tracking was computed from (the
cache manifest's bytes and the tracking settings): a stored copy whose hash differs is stale.
The format is described in ``docs/track.md``.
"""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Annotated

from pydantic import (
    Field,
    PlainSerializer,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from medseq.contracts.document import Document, Record, read_document, write_document

TRACKS_NAME = "tracks.json"


class Response(str, Enum):
    """RECIST 1.1 response categories (NE: not evaluable)."""

    CR = "CR"
    PR = "PR"
    SD = "SD"
    PD = "PD"
    NE = "NE"


class LesionStatus(str, Enum):
    """How a lesion (or a track without a lesion) stands at one timepoint."""

    TRACKED = "tracked"
    NEW = "new"
    VANISHED = "vanished"
    SPLIT = "split"
    MERGED = "merged"
    NOT_FOUND = "not_found"
    """A baseline lesion the learned tracker could not find at a follow-up (not measured)."""


class MeasurementSource(str, Enum):
    """Where a lesion's mask came from (only with ``track --tracker``)."""

    MASK = "mask"
    """A mask the user gave."""
    TRACKER = "tracker"
    """The learned tracker, prompted by a baseline lesion."""
    DETECTOR = "detector"
    """The tracker's detector: a new lesion no baseline lesion explains."""


def _num(value: float | None) -> float | None:
    """A float as written: rounded to four decimals, None when not finite."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 4)


Num = Annotated[float | None, PlainSerializer(_num, return_type=float | None)]
"""An optional measurement; written rounded (see :func:`_num`)."""
Coord = Annotated[float, PlainSerializer(_num, return_type=float | None)]
Point = tuple[Coord, Coord, Coord]
"""RAS+ millimetres."""


class LesionRow(Record):
    """One row of ``lesions.csv``: a track at a timepoint (one row per fragment after a split)."""

    patient_id: str
    timepoint: int
    days: int
    track_id: str
    lesion: int | None
    """The lesion's label at this timepoint (see :class:`medseq.tracking.lesions.Lesion`)."""
    status: LesionStatus
    target: bool
    nodal: bool
    organ: str | None
    volume_ml: Num
    longest_diameter_mm: Num
    short_axis_mm: Num
    centroid_mm: Point | None
    """On this timepoint's own scan (RAS+ mm)."""
    centroid_baseline_mm: Point | None
    """In the registered (baseline) frame."""
    volume_change_pct: Num
    """Change of the track's volume (all fragments it owns) from its first timepoint."""
    merged_into: str | None = None
    """For a track whose lesion merged into another track's lesion: that track."""
    source: MeasurementSource | None = None
    """Only with ``track --tracker``: where this measurement's mask came from."""
    confidence: Num = None
    """Only with ``track --tracker``: the network's confidence (None for given masks)."""

    @model_serializer(mode="wrap")
    def _omit_tracker_fields(self, handler: SerializerFunctionWrapHandler,
                             info: SerializationInfo) -> dict[str, object]:
        """Without a tracker the row is written as before: no ``source``/``confidence`` keys."""
        data: dict[str, object] = handler(self)
        if self.source is None:
            data.pop("source", None)
            data.pop("confidence", None)
        return data


class ResponseRow(Record):
    """A patient at a timepoint (the baseline row has no category): a ``response.csv`` row
    without the patient's best overall response, which the CSV repeats on each row."""

    patient_id: str
    timepoint: int
    days: int
    lesions: int
    targets: int
    sod_mm: Num
    change_from_baseline_pct: Num
    change_from_nadir_pct: Num
    nadir_mm: Num
    new_lesions: bool
    response: Response | None
    reasons: tuple[str, ...]
    target_volume_ml: Num
    volume_change_from_baseline_pct: Num
    volume_change_from_nadir_pct: Num
    volumetric_response: Response | None
    total_volume_ml: Num


class ResponseCsvRow(ResponseRow):
    """One row of ``response.csv``."""

    best_overall_response: Response


class PatientTracking(Record):
    """Everything ``track`` found for one patient: one entry of ``tracks.json``."""

    patient_id: str
    has_mask: bool
    tracked: bool = True
    note: str = ""
    best_overall_response: Response
    responder: bool | None = None
    """Best overall response CR or PR; None when not evaluable. Derived: set on validation."""
    slice_thickness_mm: Num = None
    targets: tuple[str, ...] = ()
    tracks: dict[str, dict[int, list[int]]] = Field(default_factory=dict)
    """LongiSeg-style map: track id -> timepoint -> the lesion labels that carry it."""
    lesions: list[LesionRow] = Field(default_factory=list)
    responses: list[ResponseRow] = Field(default_factory=list)

    def new_lesion_flags(self) -> list[bool]:
        """Per scan, in timepoint order: did tracking find a new lesion."""
        return [bool(r.new_lesions) for r in sorted(self.responses, key=lambda r: r.timepoint)]

    @model_validator(mode="after")
    def _derive_responder(self) -> PatientTracking:
        if not self.tracked or self.best_overall_response is Response.NE:
            self.responder = None
        else:
            self.responder = self.best_overall_response in (Response.CR, Response.PR)
        return self


class TrackingSettings(Record):
    """What a tracking was computed with (``settings`` of ``tracks.json``).

    Only the settings given are written: a document says what its writer set.
    """

    cache: str | None = None
    """The cache tracked (as given to ``track``)."""
    min_volume_ml: float | None = None
    lesion_info: str | None = None
    shard: str | None = None
    input: str | None = None
    """The raw input ``track`` preprocessed first, None when it was given a cache."""
    tracker: str | None = None
    """``track --tracker``: the tracker run (or ``bundled``) that segmented unmasked scans."""
    annotations: str | None = None
    """``track --annotations``: the baseline lesion list given to the tracker."""


class TracksDocument(Document):
    """``tracks.json``: the settings, and per patient its tracks and responses."""

    SCHEMA = 1
    REGENERATE = "run medseq track again"

    schema_version: int = 1
    medseq_version: str
    input_hash: str | None = None
    """Hash of what the tracking was computed from; None in documents of older medseq."""
    settings: Annotated[TrackingSettings, PlainSerializer(
        lambda s: s.model_dump(mode="json", exclude_unset=True), return_type=dict)] = Field(
        default_factory=TrackingSettings)
    patients: list[PatientTracking] = Field(default_factory=list)

    def patient(self, patient_id: str) -> PatientTracking | None:
        """The entry of ``patient_id``, None when the document has none."""
        return next((p for p in self.patients if p.patient_id == patient_id), None)


def read_tracks(path: Path) -> TracksDocument:
    """Read a ``tracks.json`` (a newer schema version is refused with a one-line reason)."""
    return read_document(Path(path), TracksDocument)


def write_tracks(path: Path, document: TracksDocument) -> Path:
    """Write ``document`` atomically at ``path``."""
    return write_document(Path(path), document)


__all__ = ["TRACKS_NAME", "LesionRow", "LesionStatus", "MeasurementSource", "PatientTracking",
           "Response", "ResponseCsvRow", "ResponseRow", "TrackingSettings", "TracksDocument",
           "read_tracks", "write_tracks"]
