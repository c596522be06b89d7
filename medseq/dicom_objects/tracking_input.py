"""What ``medseq track`` wrote, as ``export-dicom`` needs it: the one place that reads it.

``TRACKING_OUT/tracks.json`` gives per patient the lesions (track id, label at each timepoint,
status, measurements, centroid) and the responses; ``settings.cache`` names the cache whose
``manifest.json`` gives per timepoint the source mask on the source image's own grid
(``tNN_mask_native.nii.gz``), that grid, and the source series' UID, file count and content
hash. ``tracks.json`` is read through its contract (:func:`medseq.contracts.tracks.read_tracks`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from medseq.config import canonical_hash
from medseq.contracts.cache import PatientRecord
from medseq.contracts.tracks import (
    TRACKS_NAME,
    PatientTracking,
    TrackingSettings,
    read_tracks,
)
from medseq.errors import CacheError, InputDataError


@dataclass(frozen=True)
class TrackedLesion:
    """One row of ``lesions.csv``: a track at a timepoint."""

    track_id: str
    lesion: int | None
    """The lesion's label in the timepoint's mask (None when vanished)."""
    status: str
    target: bool
    volume_ml: float | None
    longest_diameter_mm: float | None
    short_axis_mm: float | None
    centroid_mm: tuple[float, float, float] | None


@dataclass(frozen=True)
class TrackedTimepoint:
    """One timepoint of a tracked patient, with what the cache knows of its source."""

    index: int
    days: int
    lesions: tuple[TrackedLesion, ...]
    response: str | None
    sod_mm: float | None
    mask_native: Path | None
    """The source mask on the source image's grid (absolute path), None without a mask."""
    native_shape: tuple[int, int, int] | None
    native_affine: tuple[tuple[float, ...], ...] | None
    series_uid: str | None
    file_count: int
    content_hash: str


@dataclass(frozen=True)
class TrackedPatient:
    """A patient of ``tracks.json`` joined with its cache record."""

    patient_id: str
    """The cache id: a pseudonym, or the original id when the cache kept ids."""
    tracked: bool
    note: str
    run_key: str
    """Hash of the patient's tracking result: keys the lesions' TrackingUIDs."""
    modality: str
    timepoints: tuple[TrackedTimepoint, ...]


@dataclass(frozen=True)
class TrackingRun:
    """A tracking output folder and the cache it was computed from."""

    folder: Path
    cache: Path
    input_path: Path | None
    """The raw input ``track`` preprocessed, when it was given raw input."""
    min_volume_ml: float
    pseudonymised: bool
    patients: tuple[TrackedPatient, ...]


def read_tracking_run(folder: Path, *, cache: Path | None = None) -> TrackingRun:
    """Read ``folder/tracks.json`` and the manifest of its cache (or of ``cache``).

    Raises:
        CacheError: no or unreadable tracks.json, its cache is missing, or they disagree.
    """
    from medseq.contracts.cache import read_manifest

    folder = Path(folder)
    path = folder / TRACKS_NAME
    if not path.is_file():
        raise CacheError("no tracks.json: not a medseq track output (run medseq track first)",
                         path=folder)
    document = read_tracks(path)
    settings = document.settings
    cache_dir = cache if cache is not None else _cache_of(settings, folder, path)
    manifest = read_manifest(cache_dir)
    patients = []
    for entry in document.patients:
        record = manifest.patients.get(entry.patient_id)
        if record is None:
            raise CacheError(f"patient {entry.patient_id} of tracks.json is not in the "
                             "cache (another cache? give it with --cache)", path=cache_dir)
        patients.append(_patient(entry, record, cache_dir))
    return TrackingRun(folder=folder, cache=Path(cache_dir),
                       input_path=Path(settings.input) if settings.input else None,
                       min_volume_ml=float(settings.min_volume_ml or 0.0),
                       pseudonymised=bool(manifest.pseudonymised), patients=tuple(patients))


def _cache_of(settings: TrackingSettings, folder: Path, path: Path) -> Path:
    named = settings.cache
    if not named:
        raise CacheError("tracks.json names no cache; give it with --cache", path=path)
    for candidate in (Path(named), folder / named):
        if (candidate / "manifest.json").is_file():
            return candidate
    raise InputDataError(f"the cache tracks.json names ({named}) is not there; give it with "
                         "--cache", path=path)


def _patient(entry: PatientTracking, record: PatientRecord, cache_dir: Path) -> TrackedPatient:
    rows: dict[int, list[TrackedLesion]] = {}
    for row in entry.lesions:
        rows.setdefault(row.timepoint, []).append(TrackedLesion(
            track_id=row.track_id, lesion=row.lesion, status=row.status.value, target=row.target,
            volume_ml=_finite(row.volume_ml), longest_diameter_mm=_finite(row.longest_diameter_mm),
            short_axis_mm=_finite(row.short_axis_mm), centroid_mm=row.centroid_mm))
    responses = {r.timepoint: r for r in entry.responses}
    timepoints = []
    for tp in sorted(record.timepoints, key=lambda t: t.index):
        response = responses.get(tp.index)
        timepoints.append(TrackedTimepoint(
            index=tp.index, days=tp.days, lesions=tuple(rows.get(tp.index, [])),
            response=(response.response.value if response is not None and response.response
                      else None),
            sod_mm=_finite(response.sod_mm) if response is not None else None,
            mask_native=cache_dir / tp.mask_native if tp.mask_native else None,
            native_shape=tuple(tp.native_shape) if tp.native_shape else None,  # type: ignore[arg-type]
            native_affine=tuple(tuple(r) for r in tp.native_affine) if tp.native_affine
            else None,
            series_uid=tp.series_uid, file_count=tp.file_count, content_hash=tp.content_hash))
    written = entry.model_dump(mode="json")  # the key hashes what tracks.json holds
    run_key = canonical_hash({"patient": entry.patient_id, "tracks": written["tracks"],
                              "lesions": written["lesions"]})
    return TrackedPatient(patient_id=entry.patient_id, tracked=entry.tracked, note=entry.note,
                          run_key=run_key, modality=str(record.modality or "CT"),
                          timepoints=tuple(timepoints))


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
