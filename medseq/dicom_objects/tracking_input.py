"""What ``medseq track`` wrote, as ``export-dicom`` needs it: the one place that reads it.

``TRACKING_OUT/tracks.json`` gives per patient the lesions (track id, label at each timepoint,
status, measurements, centroid) and the responses; ``settings.cache`` names the cache whose
``manifest.json`` gives per timepoint the source mask on the source image's own grid
(``tNN_mask_native.nii.gz``), that grid, and the source series' UID, file count and content
hash. When the typed contracts land, only :func:`read_tracking_run` changes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseq.config import canonical_hash
from medseq.errors import CacheError, InputDataError

TRACKS_NAME = "tracks.json"


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
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        settings = dict(document.get("settings") or {})
        patients_json = list(document["patients"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CacheError(f"unreadable tracks.json ({type(err).__name__})", path=path) from None
    cache_dir = cache if cache is not None else _cache_of(settings, folder, path)
    manifest = read_manifest(cache_dir)
    raw_input = settings.get("input")
    patients = []
    for entry in patients_json:
        record = manifest.patients.get(str(entry.get("patient_id")))
        if record is None:
            raise CacheError(f"patient {entry.get('patient_id')} of tracks.json is not in the "
                             "cache (another cache? give it with --cache)", path=cache_dir)
        patients.append(_patient(entry, record, cache_dir))
    return TrackingRun(folder=folder, cache=Path(cache_dir),
                       input_path=Path(raw_input) if raw_input else None,
                       min_volume_ml=float(settings.get("min_volume_ml") or 0.0),
                       pseudonymised=bool(manifest.pseudonymised), patients=tuple(patients))


def _cache_of(settings: dict[str, Any], folder: Path, path: Path) -> Path:
    named = settings.get("cache")
    if not named:
        raise CacheError("tracks.json names no cache; give it with --cache", path=path)
    for candidate in (Path(named), folder / named):
        if (candidate / "manifest.json").is_file():
            return candidate
    raise InputDataError(f"the cache tracks.json names ({named}) is not there; give it with "
                         "--cache", path=path)


def _patient(entry: dict[str, Any], record: Any, cache_dir: Path) -> TrackedPatient:
    rows: dict[int, list[TrackedLesion]] = {}
    for row in entry.get("lesions") or []:
        rows.setdefault(int(row["timepoint"]), []).append(TrackedLesion(
            track_id=str(row["track_id"]), lesion=_int(row.get("lesion")),
            status=str(row.get("status") or ""), target=bool(row.get("target")),
            volume_ml=_float(row.get("volume_ml")),
            longest_diameter_mm=_float(row.get("longest_diameter_mm")),
            short_axis_mm=_float(row.get("short_axis_mm")),
            centroid_mm=_point(row.get("centroid_mm"))))
    responses = {int(r["timepoint"]): r for r in entry.get("responses") or []}
    timepoints = []
    for tp in sorted(record.timepoints, key=lambda t: t.index):
        response = responses.get(tp.index, {})
        timepoints.append(TrackedTimepoint(
            index=tp.index, days=tp.days, lesions=tuple(rows.get(tp.index, [])),
            response=response.get("response") or None, sod_mm=_float(response.get("sod_mm")),
            mask_native=cache_dir / tp.mask_native if tp.mask_native else None,
            native_shape=tuple(tp.native_shape) if tp.native_shape else None,  # type: ignore[arg-type]
            native_affine=tuple(tuple(r) for r in tp.native_affine) if tp.native_affine
            else None,
            series_uid=tp.series_uid, file_count=tp.file_count, content_hash=tp.content_hash))
    run_key = canonical_hash({"patient": entry.get("patient_id"), "tracks": entry.get("tracks"),
                              "lesions": entry.get("lesions")})
    return TrackedPatient(patient_id=str(entry["patient_id"]), tracked=bool(entry.get("tracked")),
                          note=str(entry.get("note") or ""), run_key=run_key,
                          modality=str(record.modality or "CT"), timepoints=tuple(timepoints))


def _int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _float(value: Any) -> float | None:
    if value in (None, ""):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _point(value: Any) -> tuple[float, float, float] | None:
    if not value:
        return None
    x, y, z = (float(v) for v in value)
    return x, y, z
