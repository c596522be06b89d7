"""After tracking a filled cache: "not found" instead of 0 mm, and ``source``/``confidence``.

:func:`apply_not_found` turns the rows of baseline lesions the tracker could not find (an
empty output it was not confident about) from ``vanished`` (0 mm) into ``not_found`` (no
measurement); a follow-up where a target is not found becomes NE, and the best overall
response is recomputed. :func:`apply_sources` sets every lesion row's ``source`` (``mask``,
``tracker`` or ``detector``) and ``confidence``, typed fields of
:class:`medseq.contracts.tracks.LesionRow` that ``lesions.csv`` and ``tracks.json`` then carry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from medseq.contracts.tracks import (
    LesionRow,
    LesionStatus,
    MeasurementSource,
    PatientTracking,
    Response,
)
from medseq.tracker.fill import SOURCE_TRACKER, LesionSource, Provenance
from medseq.tracking.recist import best_overall_response

NOT_FOUND = LesionStatus.NOT_FOUND.value


def _track_of(result: PatientTracking, centroid: Sequence[float]) -> str | None:
    """The track whose baseline lesion's centroid is nearest ``centroid`` (within 10 mm)."""
    best, best_d = None, 10.0
    for row in result.lesions:
        if row.timepoint != 0 or row.centroid_mm is None:
            continue
        d = float(np.linalg.norm(np.subtract(row.centroid_mm, centroid)))
        if d <= best_d:
            best, best_d = row.track_id, d
    return best


def _key(patient: str, timepoint: int, track: str) -> tuple[str, int, str]:
    return patient, timepoint, track


def _replace(result: PatientTracking, **update: Any) -> PatientTracking:
    """``result`` with ``update`` applied, validated again (``responder`` is derived)."""
    return PatientTracking.model_validate({**dict(result), **update})


def track_sources(results: Sequence[PatientTracking], provenance: Provenance
                  ) -> dict[tuple[str, int, str], LesionSource]:
    """Tracker outcomes keyed by (patient, timepoint, track id)."""
    by_patient = {r.patient_id: r for r in results}
    out = {}
    for source in provenance.lesions:
        result = by_patient.get(source.patient_id)
        if result is None or source.source != SOURCE_TRACKER or not source.baseline_centroid_mm:
            continue
        track = _track_of(result, source.baseline_centroid_mm)
        if track is not None:
            out[_key(source.patient_id, source.timepoint, track)] = source
    return out


def apply_not_found(results: Sequence[PatientTracking], provenance: Provenance
                    ) -> list[PatientTracking]:
    """Rows of lesions the tracker did not find become ``not_found`` (see module doc)."""
    sources = track_sources(results, provenance)
    out = []
    for result in results:
        missing: dict[int, list[str]] = {}
        rows: list[LesionRow] = []
        for row in result.lesions:
            source = sources.get(_key(result.patient_id, row.timepoint, row.track_id))
            if (source is not None and source.status == NOT_FOUND
                    and row.status is LesionStatus.VANISHED):
                row = row.model_copy(update={
                    "status": LesionStatus.NOT_FOUND, "volume_ml": None,
                    "longest_diameter_mm": None, "short_axis_mm": None,
                    "volume_change_pct": None})
                if row.target:
                    missing.setdefault(row.timepoint, []).append(row.track_id)
            rows.append(row)
        if not missing:  # non-target rows may have changed; the responses have not
            out.append(result.model_copy(update={"lesions": rows}))
            continue
        responses = []
        for response in result.responses:
            if response.timepoint in missing and response.timepoint != 0:
                tracks = ", ".join(missing[response.timepoint])
                response = response.model_copy(update={
                    "response": Response.NE, "volumetric_response": Response.NE,
                    "reasons": (f"target {tracks} not found by the tracker",)})
            responses.append(response)
        follow_ups = [r.response for r in responses if r.timepoint != 0 and r.response]
        out.append(_replace(result, lesions=rows, responses=responses,
                            best_overall_response=best_overall_response(follow_ups)))
    return out


def apply_sources(results: Sequence[PatientTracking], provenance: Provenance
                  ) -> list[PatientTracking]:
    """Every lesion row with its ``source`` and ``confidence`` (None for a given mask)."""
    lookup = source_lookup(results, provenance)
    out = []
    for result in results:
        rows = []
        for row in result.lesions:
            origin, confidence = lookup(result.patient_id, row.timepoint, row.track_id,
                                        row.lesion)
            rows.append(row.model_copy(update={"source": MeasurementSource(origin),
                                               "confidence": confidence}))
        out.append(result.model_copy(update={"lesions": rows}))
    return out


def source_lookup(results: Sequence[PatientTracking], provenance: Provenance
                  ) -> Callable[[str, int, str, int | None], tuple[str, float | None]]:
    """(patient, timepoint, track id, lesion label) -> (source, confidence)."""
    by_track = track_sources(results, provenance)
    by_label: dict[tuple[str, int, int], LesionSource] = {}
    values: dict[tuple[str, int], set[int]] = {}
    for source in provenance.lesions:
        if source.value:
            by_label[(source.patient_id, source.timepoint, source.value)] = source
            values.setdefault((source.patient_id, source.timepoint), set()).add(source.value)

    def lookup(patient: str, timepoint: int, track: str, lesion: int | None
               ) -> tuple[str, float | None]:
        if timepoint not in provenance.filled.get(patient, set()):
            return MeasurementSource.MASK.value, None
        if lesion is not None:
            written = values.get((patient, timepoint), set())
            # One value in the map: the tracking numbers its component 1 instead.
            value = next(iter(written)) if len(written) == 1 and lesion == 1 else lesion
            found = by_label.get((patient, timepoint, value))
            if found is not None:
                return found.source, found.confidence
        tracked = by_track.get((patient, timepoint, track))
        if tracked is not None:
            return tracked.source, tracked.confidence
        return SOURCE_TRACKER, None

    return lookup
