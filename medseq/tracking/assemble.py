"""RECIST assembly: from one patient's matched lesions to its targets, responses and rows.

Targets are picked at baseline (:func:`medseq.tracking.recist.select_targets`), every follow-up
is assessed (:func:`medseq.tracking.recist.assess`) and the ``lesions.csv`` / ``response.csv``
rows are built (:mod:`medseq.contracts.tracks`). Organ and nodal status come from the
``--lesion-info`` rows (:mod:`medseq.tracking.lesion_info`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medseq.contracts.cache import TimepointRecord
from medseq.contracts.tracks import (
    LesionRow,
    LesionStatus,
    PatientTracking,
    Response,
    ResponseRow,
)
from medseq.errors import InputDataError
from medseq.tracking.lesion_info import LesionInfo
from medseq.tracking.lesions import LesionSet
from medseq.tracking.match import Frame, Observation, Tracking
from medseq.tracking.recist import (
    Assessment,
    BaselineLesion,
    FollowUp,
    assess,
    best_overall_response,
    select_targets,
    volumetric_category,
    volumetric_changes,
)


def assemble(patient_id: str, timepoints: Sequence[TimepointRecord],
             with_mask: Sequence[TimepointRecord], sets: Sequence[LesionSet],
             frames: Sequence[Frame], tracking: Tracking,
             lesion_info: Sequence[LesionInfo]) -> PatientTracking:
    """Targets, per-follow-up assessment and the output rows."""
    from medseq.tracking.lesions import slice_thickness_mm

    organ, nodal = _apply_lesion_info(patient_id, lesion_info, with_mask, sets, tracking)
    base = sets[0]
    thickness = slice_thickness_mm(base.affine)
    baseline_lesions = [
        BaselineLesion(lesion_id=obs.tracks[0],
                       longest_diameter_mm=base.lesions[obs.lesion].longest_diameter_mm,
                       short_axis_mm=base.lesions[obs.lesion].short_axis_mm,
                       nodal=nodal.get(obs.tracks[0], False), organ=organ.get(obs.tracks[0]))
        for obs in tracking.observations[0]
    ]
    targets = tuple(les.lesion_id for les in select_targets(baseline_lesions,
                                                            slice_thickness_mm=thickness))
    owners = [_owners(obs_list, targets) for obs_list in tracking.observations]
    measure = [_target_measures(obs_list, own, sets[f], targets, nodal)
               for f, (obs_list, own) in enumerate(zip(tracking.observations, owners,
                                                       strict=True))]
    target_volume = [sum(sets[f].lesions[o.lesion].volume_ml for o in tracking.observations[f]
                         if owners[f][o.lesion] in targets) for f in range(len(frames))]
    # A lesion absent at baseline counts as new at every follow-up where it is present: once
    # progressed, the assessment stays PD while the new lesion is there.
    new = [any(tracking.first_frame[t] > 0 for o in obs for t in o.tracks)
           for obs in tracking.observations]
    followups = [
        FollowUp(diameters_mm=measure[f], new_lesions=new[f],
                 non_targets_present=_non_targets_present(f, tracking, owners[f], sets[f],
                                                          targets, nodal))
        for f in range(1, len(frames))
    ]
    assessments = assess(measure[0], followups, nodal={t: nodal.get(t, False) for t in targets})
    vol_changes = volumetric_changes(target_volume) if targets else []
    vol_categories = (volumetric_category(target_volume, new_lesions=new[1:]) if targets
                      else [Response.PD if n else Response.NE for n in new[1:]])
    responses = _response_rows(patient_id, timepoints, with_mask, sets, targets, measure,
                               target_volume, new, assessments, vol_changes, vol_categories)
    lesion_rows = _lesion_rows(patient_id, with_mask, sets, frames, tracking, owners, targets,
                               organ, nodal)
    mapping: dict[str, dict[int, list[int]]] = {t: {} for t in tracking.track_ids}
    for f, obs_list in enumerate(tracking.observations):
        for obs in obs_list:
            for track in obs.tracks:
                mapping[track].setdefault(with_mask[f].index, []).append(
                    sets[f].lesions[obs.lesion].label)
    bor = best_overall_response([a.response for a in assessments])
    return PatientTracking(patient_id=patient_id, has_mask=True, lesions=lesion_rows,
                           responses=responses, best_overall_response=bor, targets=targets,
                           slice_thickness_mm=thickness, tracks=mapping)


def _owners(observations: Sequence[Observation], targets: Sequence[str]) -> dict[int, str]:
    """Which track a lesion's measurement counts for: its first target track, else its first.

    RECIST measures coalesced targets once; giving the lesion to one track and 0 to the others
    keeps the SOD from counting it twice.
    """
    rank = {t: n for n, t in enumerate(targets)}
    owners: dict[int, str] = {}
    for obs in observations:
        carried = sorted((t for t in obs.tracks if t in rank), key=rank.__getitem__)
        owners[obs.lesion] = carried[0] if carried else obs.tracks[0]
    return owners


def _target_measures(observations: Sequence[Observation], owners: Mapping[int, str],
                     lesion_set: LesionSet, targets: Sequence[str],
                     nodal: Mapping[str, bool]) -> dict[str, float]:
    """Each target's RECIST measurement: the sum over the fragments it owns, 0 mm when gone."""
    out = dict.fromkeys(targets, 0.0)
    for obs in observations:
        owner = owners[obs.lesion]
        if owner in out:
            lesion = lesion_set.lesions[obs.lesion]
            out[owner] += lesion.short_axis_mm if nodal.get(owner) else lesion.longest_diameter_mm
    return out


def _non_targets_present(frame: int, tracking: Tracking, owners: Mapping[int, str],
                         lesion_set: LesionSet, targets: Sequence[str],
                         nodal: Mapping[str, bool]) -> bool:
    """A baseline non-target is still there (a node counts only while its short axis >= 10 mm)."""
    baseline = {t for obs in tracking.observations[0] for t in obs.tracks}
    for obs in tracking.observations[frame]:
        owner = owners[obs.lesion]
        if owner in targets or owner not in baseline:
            continue
        if not nodal.get(owner) or lesion_set.lesions[obs.lesion].short_axis_mm >= 10.0:
            return True
    return False


def _apply_lesion_info(patient_id: str, rows: Sequence[LesionInfo],
                       with_mask: Sequence[TimepointRecord], sets: Sequence[LesionSet],
                       tracking: Tracking) -> tuple[dict[str, str], dict[str, bool]]:
    """Organ and nodal status per track, from the lesion-info rows of this patient."""
    organ: dict[str, str] = {}
    nodal: dict[str, bool] = {}
    frame_of = {tp.index: f for f, tp in enumerate(with_mask)}
    for row in rows:
        where = f"lesion info line {row.line} (patient {patient_id})"
        if row.timepoint not in frame_of:
            raise InputDataError(f"{where}: timepoint {row.timepoint} has no lesion mask")
        f = frame_of[row.timepoint]
        lesion = _find_lesion(sets[f], row)
        if lesion is None:
            raise InputDataError(f"{where}: no lesion matches it at timepoint {row.timepoint}")
        for obs in tracking.observations[f]:
            if obs.lesion == lesion:
                for track in obs.tracks:
                    if row.organ:
                        organ[track] = row.organ
                    nodal[track] = row.nodal
    return organ, nodal


def _find_lesion(lesion_set: LesionSet, row: LesionInfo) -> int | None:
    if row.label is not None:
        for n, lesion in enumerate(lesion_set.lesions):
            if lesion.label == row.label:
                return n
        return None
    assert row.point_mm is not None  # the parser guarantees label or point
    point = np.append(np.asarray(row.point_mm, dtype=np.float64), 1.0)
    voxel = np.rint(np.linalg.inv(lesion_set.affine) @ point)[:3].astype(int)
    shape = lesion_set.components.shape
    if all(0 <= v < s for v, s in zip(voxel, shape, strict=True)):
        component = int(lesion_set.components[tuple(voxel)])
        if component:
            return component - 1
    best: int | None = None
    best_distance = math.inf
    for n, lesion in enumerate(lesion_set.lesions):
        distance = float(np.linalg.norm(np.subtract(lesion.centroid_mm, row.point_mm)))
        if distance <= lesion.longest_diameter_mm / 2 + 5.0 and distance < best_distance:
            best, best_distance = n, distance
    return best


def _response_rows(patient_id: str, timepoints: Sequence[TimepointRecord],
                   with_mask: Sequence[TimepointRecord], sets: Sequence[LesionSet],
                   targets: Sequence[str], measure: Sequence[Mapping[str, float]],
                   target_volume: Sequence[float], new: Sequence[bool],
                   assessments: Sequence[Assessment],
                   vol_changes: Sequence[tuple[float | None, float | None]],
                   vol_categories: Sequence[Response]) -> list[ResponseRow]:
    frame_of = {tp.index: f for f, tp in enumerate(with_mask)}
    rows: list[ResponseRow] = []
    for tp in timepoints:
        f = frame_of.get(tp.index)
        common: dict[str, Any] = {"patient_id": patient_id, "timepoint": tp.index,
                                  "days": tp.days, "targets": len(targets)}
        if f is None:
            rows.append(ResponseRow(
                **common, lesions=0, sod_mm=None, change_from_baseline_pct=None,
                change_from_nadir_pct=None, nadir_mm=None, new_lesions=False,
                response=Response.NE, reasons=("no lesion mask",), target_volume_ml=None,
                volume_change_from_baseline_pct=None, volume_change_from_nadir_pct=None,
                volumetric_response=Response.NE, total_volume_ml=None))
            continue
        total = float(sum(les.volume_ml for les in sets[f].lesions))
        sod = float(sum(measure[f].values()))
        has_targets = bool(targets)
        if f == 0:
            rows.append(ResponseRow(
                **common, lesions=len(sets[f].lesions), sod_mm=sod,
                change_from_baseline_pct=None, change_from_nadir_pct=None, nadir_mm=None,
                new_lesions=False, response=None, reasons=(),
                target_volume_ml=target_volume[0] if has_targets else None,
                volume_change_from_baseline_pct=None, volume_change_from_nadir_pct=None,
                volumetric_response=None, total_volume_ml=total))
            continue
        a = assessments[f - 1]
        base_pct, nadir_pct = vol_changes[f - 1] if has_targets else (None, None)
        rows.append(ResponseRow(
            **common, lesions=len(sets[f].lesions), sod_mm=a.sod_mm,
            change_from_baseline_pct=a.change_from_baseline_pct,
            change_from_nadir_pct=a.change_from_nadir_pct, nadir_mm=a.nadir_mm,
            new_lesions=new[f], response=a.response, reasons=a.reasons,
            target_volume_ml=target_volume[f] if has_targets else None,
            volume_change_from_baseline_pct=base_pct, volume_change_from_nadir_pct=nadir_pct,
            volumetric_response=vol_categories[f - 1], total_volume_ml=total))
    return rows


def _lesion_rows(patient_id: str, with_mask: Sequence[TimepointRecord],
                 sets: Sequence[LesionSet], frames: Sequence[Frame], tracking: Tracking,
                 owners: Sequence[Mapping[int, str]], targets: Sequence[str],
                 organ: Mapping[str, str], nodal: Mapping[str, bool]) -> list[LesionRow]:
    rows: list[LesionRow] = []
    first_volume: dict[str, float] = {}
    for f, tp in enumerate(with_mask):
        lesions = sets[f].lesions
        own_volume: dict[str, float] = {}
        for obs in tracking.observations[f]:
            owner = owners[f][obs.lesion]
            own_volume[owner] = own_volume.get(owner, 0.0) + lesions[obs.lesion].volume_ml
        for track, volume in own_volume.items():
            first_volume.setdefault(track, volume)
        for track in tracking.track_ids:
            if tracking.first_frame[track] > f:
                continue
            common: dict[str, Any] = {
                "patient_id": patient_id, "timepoint": tp.index, "days": tp.days,
                "track_id": track, "target": track in targets,
                "nodal": nodal.get(track, False), "organ": organ.get(track)}
            carriers = tracking.lesions_of(f, track)
            if not carriers:
                rows.append(LesionRow(**common, lesion=None, status=LesionStatus.VANISHED,
                                      volume_ml=0.0, longest_diameter_mm=0.0, short_axis_mm=0.0,
                                      centroid_mm=None, centroid_baseline_mm=None,
                                      volume_change_pct=_change(0.0, first_volume.get(track))))
                continue
            for obs in carriers:
                lesion = lesions[obs.lesion]
                owner = owners[f][obs.lesion]
                if owner != track:
                    rows.append(LesionRow(**common, lesion=lesion.label,
                                          status=LesionStatus.MERGED, volume_ml=None,
                                          longest_diameter_mm=None, short_axis_mm=None,
                                          centroid_mm=None, centroid_baseline_mm=None,
                                          volume_change_pct=None, merged_into=owner))
                    continue
                base_c = frames[f].centroids_mm[obs.lesion]
                rows.append(LesionRow(
                    **common, lesion=lesion.label, status=obs.status,
                    volume_ml=lesion.volume_ml, longest_diameter_mm=lesion.longest_diameter_mm,
                    short_axis_mm=lesion.short_axis_mm, centroid_mm=lesion.centroid_mm,
                    centroid_baseline_mm=(float(base_c[0]), float(base_c[1]), float(base_c[2])),
                    volume_change_pct=_change(own_volume.get(track, 0.0),
                                              first_volume.get(track))))
    return rows


def _change(value: float, reference: float | None) -> float | None:
    if reference is None or reference <= 0:
        return None
    return 100.0 * (value - reference) / reference
