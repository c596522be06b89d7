"""After tracking a filled cache: "not found" instead of 0 mm, and ``source``/``confidence``.

:func:`apply_not_found` turns the rows of baseline lesions the tracker could not find (an
empty output it was not confident about) from ``vanished`` (0 mm) into ``not_found`` (no
measurement); a follow-up where a target is not found becomes NE, and the best overall
response is recomputed. :func:`add_source_columns` appends ``source`` (``mask``, ``tracker``
or ``detector``) and ``confidence`` to ``lesions.csv`` and to every lesion of ``tracks.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseq.io.atomic import write_text_atomic
from medseq.tracker.fill import SOURCE_MASK, SOURCE_TRACKER, LesionSource, Provenance
from medseq.tracking.pipeline import LesionRow, PatientTracking
from medseq.tracking.recist import Response, best_overall_response

NOT_FOUND = "not_found"


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
            if source is not None and source.status == NOT_FOUND and row.status == "vanished":
                row = dataclasses.replace(row, status=NOT_FOUND, volume_ml=None,
                                          longest_diameter_mm=None, short_axis_mm=None,
                                          volume_change_pct=None)
                if row.target:
                    missing.setdefault(row.timepoint, []).append(row.track_id)
            rows.append(row)
        responses = []
        for response in result.responses:
            if response.timepoint in missing and response.timepoint != 0:
                tracks = ", ".join(missing[response.timepoint])
                response = dataclasses.replace(
                    response, response=Response.NE, volumetric_response=Response.NE,
                    reasons=(f"target {tracks} not found by the tracker",))
            responses.append(response)
        follow_ups = [r.response for r in responses if r.timepoint != 0 and r.response]
        bor = best_overall_response(follow_ups) if missing else result.best_overall_response
        out.append(dataclasses.replace(result, lesions=rows, responses=responses,
                                       best_overall_response=bor))
    return out


def add_source_columns(out_dir: Path, results: Sequence[PatientTracking],
                       provenance: Provenance) -> None:
    """Append ``source`` and ``confidence`` to ``lesions.csv`` and ``tracks.json`` in place."""
    out_dir = Path(out_dir)
    lookup = source_lookup(results, provenance)
    lesions_csv = out_dir / "lesions.csv"
    reader = csv.reader(io.StringIO(lesions_csv.read_text(encoding="utf-8")))
    header = next(reader)
    column = {name: n for n, name in enumerate(header)}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*header, "source", "confidence"])
    for record in reader:
        lesion_text = record[column["lesion"]]
        origin, confidence = lookup(record[column["patient_id"]],
                                    int(record[column["timepoint"]]), record[column["track_id"]],
                                    int(lesion_text) if lesion_text else None)
        writer.writerow([*record, origin, "" if confidence is None else f"{confidence:.4f}"])
    write_text_atomic(lesions_csv, buffer.getvalue())
    tracks_json = out_dir / "tracks.json"
    document = json.loads(tracks_json.read_text(encoding="utf-8"))
    annotate_document(document.get("patients", []), results, provenance)
    write_text_atomic(tracks_json, json.dumps(document, indent=2) + "\n")


def annotate_document(patients: list[dict[str, Any]], results: Sequence[PatientTracking],
                      provenance: Provenance) -> None:
    """Add ``source`` and ``confidence`` to every lesion of ``tracks.json``-style patients."""
    lookup = source_lookup(results, provenance)
    for patient in patients:
        for lesion in patient.get("lesions", []):
            origin, confidence = lookup(patient["patient_id"], int(lesion["timepoint"]),
                                        lesion["track_id"], lesion.get("lesion"))
            lesion["source"], lesion["confidence"] = origin, confidence


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
            return SOURCE_MASK, None
        if lesion is not None:
            written = values.get((patient, timepoint), set())
            # One value in the map: lesions.csv numbers its component 1 instead.
            value = next(iter(written)) if len(written) == 1 and lesion == 1 else lesion
            found = by_label.get((patient, timepoint, value))
            if found is not None:
                return found.source, found.confidence
        tracked = by_track.get((patient, timepoint, track))
        if tracked is not None:
            return tracked.source, tracked.confidence
        return SOURCE_TRACKER, None

    return lookup
