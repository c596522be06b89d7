"""One section per patient: prediction, RECIST table, lesion trajectories, lesion montage."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medseq.contracts.cache import PatientRecord
from medseq.evaluation.rundir import PatientPrediction
from medseq.report import figures
from medseq.report.inputs import RunInputs
from medseq.report.records import Figure, PatientSection, figure
from medseq.report.text import number, percent

MONTAGE_LESIONS = 5
"""Tracked lesions per patient shown in the montage (targets first, then by baseline volume)."""


def patient_section(pid: str, inputs: RunInputs, display: Callable[[str], str], *,
                    keep_ids: bool, show_forecast: bool = True) -> PatientSection:
    """The section of patient ``pid`` (cache id), shown as ``display(pid)``; the forecast is
    left out of it unless ``show_forecast`` (it beats persistence)."""
    prediction = inputs.predictions.get(pid)
    track = inputs.tracks.get(pid)
    manifest, cache_dir = inputs.manifest, inputs.cache_dir
    scored = inputs.evaluation.scored(pid)
    record = manifest.patients.get(pid) if manifest is not None else None
    shown = display(pid)
    forecast = "n/a"
    if not show_forecast:
        forecast = "not shown: the forecast does not beat persistence (see Performance)"
    elif prediction is not None and prediction.forecast_ml:
        last = prediction.forecast_ml[-1]
        if last is not None:
            forecast = f"{last:.2f} mL (total lesion volume)"
    section = PatientSection(
        anchor="".join(ch if ch.isalnum() else "-" for ch in shown),
        display_id=shown,
        bor=str(track.get("best_overall_response")) if track else "n/a",
        label=prediction.label if prediction is not None else None,
        probability=number(prediction.probability) if prediction is not None else "n/a",
        baseline_probability=number(scored.baseline_probability if scored else None),
        fold=prediction.fold if prediction is not None else None,
        forecast=forecast,
    )
    if track is not None and not track.get("tracked", True):
        section.note = str(track.get("note", "not tracked"))
    if track is not None:
        section.recist_rows = recist_rows(track)
    days = _days(prediction, record)
    if days:
        section.figures.append(_trajectory(days, prediction, track, show_forecast))
    if record is not None and cache_dir is not None and track is not None and track.get(
            "tracked"):
        montage = _montage(cache_dir, record, track)
        if montage is not None:
            section.figures.append(montage)
    return section


def recist_rows(track: Mapping[str, Any]) -> list[list[str]]:
    """The RECIST table: one row per scan."""
    rows = []
    for r in track.get("responses", []):
        rows.append([
            str(r["timepoint"]), str(r["days"]), str(r.get("lesions", "")),
            number(r.get("sod_mm"), 1), percent(r.get("change_from_baseline_pct")),
            percent(r.get("change_from_nadir_pct")), "yes" if r.get("new_lesions") else "no",
            r.get("response") or "baseline", number(r.get("target_volume_ml"), 2),
            r.get("volumetric_response") or "",
        ])
    return rows


def _days(prediction: PatientPrediction | None, record: PatientRecord | None) -> list[int]:
    if record is not None and record.timepoints:
        return [tp.days for tp in sorted(record.timepoints, key=lambda tp: tp.index)]
    return list(prediction.days) if prediction is not None else []


def _trajectory(days: Sequence[int], prediction: PatientPrediction | None,
                track: Mapping[str, Any] | None, show_forecast: bool) -> Figure:
    per_track: dict[str, dict[int, float]] = {}
    timepoint_days: dict[int, int] = {}
    if track is not None:
        for row in track.get("lesions", []):
            timepoint_days[row["timepoint"]] = row["days"]
            if row.get("volume_ml") is None:
                continue
            per_track.setdefault(row["track_id"], {})
            vols = per_track[row["track_id"]]
            vols[row["days"]] = vols.get(row["days"], 0.0) + float(row["volume_ml"])
    # Keep the figure readable: the five largest tracks by peak volume.
    largest = sorted(per_track, key=lambda t: -max(per_track[t].values()))[:MONTAGE_LESIONS]
    lesion_volumes = {t: [per_track[t].get(d) for d in days] for t in sorted(largest)}
    total: list[float | None] = []
    if prediction is not None and len(prediction.burden_ml) == len(days):
        total = list(prediction.burden_ml)
    elif track is not None:
        by_day = {r["days"]: r.get("total_volume_ml") for r in track.get("responses", [])}
        total = [by_day.get(d) for d in days]
    forecast = (list(prediction.forecast_ml)
                if prediction is not None and show_forecast else [])
    png = figures.trajectory_figure(days, lesion_volumes, total or [None] * len(days), forecast)
    caption = ("Volume of each tracked lesion (the five largest) and the total burden"
               + ("; orange diamonds: the model's forecast of the next scan's total burden, made "
                  "at each scan." if forecast else
                  " (the forecast is not drawn: it does not beat persistence)."))
    return figure("trajectory", "Lesion trajectories", caption, png)


def _montage(cache_dir: Path, record: PatientRecord, track: Mapping[str, Any]) -> Figure | None:
    from medseq.report.montage import lesion_slices

    timepoints = sorted(record.timepoints, key=lambda tp: tp.index)
    centres: dict[str, dict[int, tuple[float, float, float]]] = {}
    peak: dict[str, float] = {}
    for row in track.get("lesions", []):
        c = row.get("centroid_baseline_mm")
        if c is None or any(v is None for v in c):
            continue
        centres.setdefault(row["track_id"], {})[row["timepoint"]] = (float(c[0]), float(c[1]),
                                                                     float(c[2]))
        peak[row["track_id"]] = max(peak.get(row["track_id"], 0.0),
                                    float(row.get("volume_ml") or 0.0))
    targets = [t for t in track.get("targets", []) if t in centres]
    others = sorted((t for t in centres if t not in targets), key=lambda t: -peak[t])
    chosen = (targets + others)[:MONTAGE_LESIONS]
    if not chosen:
        return None
    volumes: dict[str, Any] = {}
    lesions = []
    for t in chosen:
        radius_mm = (3.0 * max(peak[t], 1e-3) * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
        name = f"{t} (target)" if t in targets else t
        lesions.append(lesion_slices(cache_dir, timepoints, name, centres[t],
                                     half_width_mm=2.5 * radius_mm, modality=record.modality,
                                     volumes=volumes))
    png = figures.montage_figure(lesions, [tp.days for tp in timepoints])
    window = (", CT soft-tissue window W400/L40 (lung window W1500/L-600 for lesions below it)."
              if record.modality == "CT" else ".")
    return figure("montage", "Lesion montage", "Axial slice through each tracked lesion at every "
                  "scan (registered to the baseline; anterior up, patient's right on the left), "
                  "mask outlined in yellow" + window, png)
