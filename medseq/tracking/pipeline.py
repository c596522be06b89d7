"""Track lesions and assess response for every patient of a preprocessing cache.

Per patient: measure each timepoint's lesions on the source mask's own grid (``mask_native``),
carry their component labels into the registered baseline grid with the cache's rigid transform
(nearest neighbour, the operation that made the registered mask), link timepoints
(:mod:`medseq.tracking.match`), pick RECIST targets at baseline and assess every follow-up
(:mod:`medseq.tracking.recist`). :func:`write_outputs` writes ``lesions.csv``, ``response.csv``
and ``tracks.json`` (documented in ``docs/track.md``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseq import __version__
from medseq.contracts.cache import PatientRecord, TimepointRecord, read_manifest
from medseq.csv_cells import csv_text
from medseq.errors import CacheError, InputDataError
from medseq.io.atomic import write_text_atomic
from medseq.schema import SCHEMA_VERSION
from medseq.tracking.lesion_info import LesionInfo, read_lesion_info
from medseq.tracking.lesions import DEFAULT_MIN_VOLUME_ML, LesionSet, find_lesions
from medseq.tracking.match import (
    Frame,
    LesionStatus,
    MatchSettings,
    Observation,
    Tracking,
    track_frames,
)
from medseq.tracking.recist import (
    Assessment,
    BaselineLesion,
    FollowUp,
    Response,
    assess,
    best_overall_response,
    select_targets,
    volumetric_category,
    volumetric_changes,
)

NO_MASK_NOTE = "no lesion mask: not tracked"


@dataclass(frozen=True)
class LesionRow:
    """One row of ``lesions.csv``: a track at a timepoint (one row per fragment after a split)."""

    patient_id: str
    timepoint: int
    days: int
    track_id: str
    lesion: int | None
    """The lesion's label at this timepoint (see :class:`medseq.tracking.lesions.Lesion`)."""
    status: str
    target: bool
    nodal: bool
    organ: str | None
    volume_ml: float | None
    longest_diameter_mm: float | None
    short_axis_mm: float | None
    centroid_mm: tuple[float, float, float] | None
    """On this timepoint's own scan (RAS+ mm)."""
    centroid_baseline_mm: tuple[float, float, float] | None
    """In the registered (baseline) frame."""
    volume_change_pct: float | None
    """Change of the track's volume (all fragments it owns) from its first timepoint."""
    merged_into: str | None = None
    """For a track whose lesion merged into another track's lesion: that track."""


@dataclass(frozen=True)
class ResponseRow:
    """One row of ``response.csv``: a patient at a timepoint (the baseline row has no category)."""

    patient_id: str
    timepoint: int
    days: int
    lesions: int
    targets: int
    sod_mm: float | None
    change_from_baseline_pct: float | None
    change_from_nadir_pct: float | None
    nadir_mm: float | None
    new_lesions: bool
    response: Response | None
    reasons: tuple[str, ...]
    target_volume_ml: float | None
    volume_change_from_baseline_pct: float | None
    volume_change_from_nadir_pct: float | None
    volumetric_response: Response | None
    total_volume_ml: float | None


@dataclass(frozen=True)
class PatientTracking:
    """Everything ``track`` found for one patient."""

    patient_id: str
    has_mask: bool
    lesions: list[LesionRow]
    responses: list[ResponseRow]
    best_overall_response: Response
    targets: tuple[str, ...] = ()
    tracked: bool = True
    note: str = ""
    slice_thickness_mm: float | None = None
    tracks: dict[str, dict[int, list[int]]] = field(default_factory=dict)
    """LongiSeg-style map: track id -> timepoint -> the lesion labels that carry it."""

    @property
    def responder(self) -> bool | None:
        """Best overall response CR or PR; None when not evaluable."""
        if not self.tracked or self.best_overall_response is Response.NE:
            return None
        return self.best_overall_response in (Response.CR, Response.PR)


def track_cache(
    cache_dir: Path,
    *,
    min_volume_ml: float = DEFAULT_MIN_VOLUME_ML,
    lesion_info: Path | None = None,
    settings: MatchSettings | None = None,
    shard: tuple[int, int] | None = None,
) -> list[PatientTracking]:
    """Track every patient of ``cache_dir`` (id order); failed ones are listed, not tracked.

    Args:
        cache_dir: a cache written by ``medseq preprocess`` (holds ``manifest.json``).
        min_volume_ml: components smaller than this are not lesions.
        lesion_info: optional CSV of organs and nodal status (:mod:`medseq.tracking.lesion_info`).
        settings: matching thresholds.
        shard: ``(k, n)`` to track only every n-th patient starting at the k-th (1-based).

    Raises:
        CacheError: no or invalid manifest, or a file it names is missing or unreadable.
    """
    cache_dir = Path(cache_dir)
    manifest = read_manifest(cache_dir)
    info = read_lesion_info(lesion_info) if lesion_info is not None else {}
    if info:
        info = _info_by_cache_id(info, cache_dir, set(manifest.patients))
    records = [record for _, record in sorted(manifest.patients.items())]
    if shard is not None:
        k, n = shard
        records = records[k - 1::n]
    results = []
    for record in records:
        if record.status != "ok":
            results.append(_untracked(record.patient_id, has_mask=record.has_mask,
                                      note="preprocessing failed: not tracked"))
            continue
        results.append(track_patient(cache_dir, record, min_volume_ml=min_volume_ml,
                                     lesion_info=info.get(record.patient_id, []),
                                     settings=settings))
    return results


def _info_by_cache_id(info: dict[str, list[LesionInfo]], cache_dir: Path,
                      cache_ids: set[str]) -> dict[str, list[LesionInfo]]:
    """Key lesion-info rows by cache id: original ids map through the cache's pseudonym key."""
    from medseq.preprocess.pseudonym import pseudonym, read_salt

    unknown = [pid for pid in info if pid not in cache_ids]
    if not unknown:
        return info
    out = {pid: rows for pid, rows in info.items() if pid in cache_ids}
    key = read_salt(cache_dir)
    if key is not None:
        for pid in unknown:
            alias = pseudonym(pid, key)
            if alias in cache_ids:
                out.setdefault(alias, []).extend(info[pid])
                continue
            raise InputDataError(f"lesion info line {info[pid][0].line}: patient {pid} is not in "
                                 "the cache (neither its id nor its pseudonym)")
        return out
    pid = unknown[0]
    raise InputDataError(f"lesion info line {info[pid][0].line}: patient {pid} is not in the "
                         "cache")


def track_patient(
    cache_dir: Path,
    record: PatientRecord,
    *,
    min_volume_ml: float = DEFAULT_MIN_VOLUME_ML,
    lesion_info: Sequence[LesionInfo] = (),
    settings: MatchSettings | None = None,
) -> PatientTracking:
    """Track one patient of a cache (see the module docstring)."""
    timepoints = sorted(record.timepoints, key=lambda tp: tp.index)
    with_mask = [tp for tp in timepoints if tp.mask_native or tp.mask]
    if not with_mask:
        return _untracked(record.patient_id, has_mask=False, note=NO_MASK_NOTE)
    if not timepoints or with_mask[0].index != timepoints[0].index:
        return _untracked(record.patient_id, has_mask=True,
                          note="baseline has no lesion mask: not tracked")
    grid_shape, grid_affine = _baseline_grid(cache_dir, with_mask[0])
    sets: list[LesionSet] = []
    frames: list[Frame] = []
    for tp in with_mask:
        lesion_set, transform = _measure_timepoint(cache_dir, tp, min_volume_ml)
        sets.append(lesion_set)
        frames.append(_frame(lesion_set, transform, grid_shape, grid_affine))
    tracking = track_frames(frames, settings)
    result = _assemble(record.patient_id, timepoints, with_mask, sets, frames, tracking,
                       lesion_info)
    flagged = [f"t{tp.index:02d}" for tp in with_mask if not tp.registration.ok]
    if flagged:
        note = f"registration flagged at {', '.join(flagged)}: check the matches"
        result = dataclasses.replace(result, note=note)
    return result


def _untracked(patient_id: str, *, has_mask: bool, note: str) -> PatientTracking:
    return PatientTracking(patient_id=patient_id, has_mask=has_mask, lesions=[], responses=[],
                           best_overall_response=Response.NE, tracked=False, note=note)


def _baseline_grid(cache_dir: Path, baseline: TimepointRecord) -> tuple[tuple[int, ...],
                                                                        np.ndarray]:
    """Shape and affine of the registered grid (the baseline's registered mask or image)."""
    from medseq.io.nifti import read_nifti_header

    for name in (baseline.mask, baseline.image, baseline.mask_native):
        if name:
            path = cache_dir / name
            if path.is_file():
                header = read_nifti_header(path)
                return header.shape, header.affine
    raise CacheError("baseline files named in manifest.json are missing", path=cache_dir)


def _measure_timepoint(cache_dir: Path, tp: TimepointRecord,
                       min_volume_ml: float) -> tuple[LesionSet, np.ndarray]:
    """Lesions of one timepoint on its source grid, and its transform to the baseline frame."""
    from medseq.io.nifti import load_nifti, mask_labels

    if tp.mask_native:
        path = cache_dir / tp.mask_native
        transform = np.asarray(tp.transform_to_baseline, dtype=np.float64)
    else:
        # Older caches without the source mask: measure on the registered grid (already baseline).
        path = cache_dir / str(tp.mask)
        transform = np.eye(4)
    if not path.is_file():
        raise CacheError("mask named in manifest.json is missing (rerun preprocess)", path=path)
    volume = load_nifti(path)
    labels = mask_labels(volume.array, path=path)
    return find_lesions(labels, volume.affine, min_volume_ml=min_volume_ml), transform


def _frame(lesion_set: LesionSet, transform: np.ndarray, grid_shape: tuple[int, ...],
           grid_affine: np.ndarray) -> Frame:
    """Carry component labels onto the registered grid (nearest neighbour) for overlap.

    Sampling runs lesion by lesion over each lesion's own box on the registered grid, and the
    result is kept sparse, so time and memory follow the lesions' size, not the scan's.
    """
    count = len(lesion_set.lesions)
    centroids = np.array([les.centroid_mm for les in lesion_set.lesions]).reshape(count, 3)
    centroids = centroids @ transform[:3, :3].T + transform[:3, 3]
    volumes = np.array([les.volume_ml for les in lesion_set.lesions], dtype=np.float64)
    # grid index -> baseline world -> this scan's world -> this scan's voxel index
    to_native = np.linalg.inv(lesion_set.affine) @ np.linalg.inv(transform) @ grid_affine
    to_grid = np.linalg.inv(to_native)
    components = lesion_set.components
    shape = np.array(components.shape)
    flat_parts: list[np.ndarray] = []
    label_parts: list[np.ndarray] = []
    for lesion in lesion_set.lesions:
        box = _grid_box(lesion.box, to_grid, grid_shape)
        if box is None:
            continue
        idx = np.stack(np.meshgrid(*(np.arange(lo, hi) for lo, hi in box), indexing="ij"),
                       axis=-1).reshape(-1, 3)
        native = np.rint(idx @ to_native[:3, :3].T + to_native[:3, 3]).astype(np.int64)
        inside = np.all((native >= 0) & (native < shape), axis=1)
        hit = native[inside]
        mine = components[hit[:, 0], hit[:, 1], hit[:, 2]] == lesion.component
        flat_parts.append(np.ravel_multi_index(idx[inside][mine].T, grid_shape))
        label_parts.append(np.full(int(mine.sum()), lesion.component, dtype=np.int64))
    if flat_parts:
        flat = np.concatenate(flat_parts)
        labels = np.concatenate(label_parts)
        order = np.argsort(flat, kind="stable")
        flat, labels = flat[order], labels[order]
        # Boxes of neighbouring lesions overlap, but each grid voxel samples one native voxel,
        # so a voxel can only be claimed once; keep the first occurrence to be safe.
        keep = np.ones(flat.size, dtype=bool)
        keep[1:] = flat[1:] != flat[:-1]
        flat, labels = flat[keep], labels[keep]
    else:
        flat = np.zeros(0, dtype=np.int64)
        labels = np.zeros(0, dtype=np.int64)
    return Frame(voxels=flat, labels=labels, centroids_mm=centroids, volumes_ml=volumes)


def _grid_box(native_box: tuple[tuple[int, int], ...], to_grid: np.ndarray,
              grid_shape: tuple[int, ...]) -> list[tuple[int, int]] | None:
    """Registered-grid index box covering a native voxel box (one voxel margin), or None."""
    lo = [start - 0.5 for start, _ in native_box]
    hi = [stop - 0.5 for _, stop in native_box]
    corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    points = corners @ to_grid.T
    start = np.maximum(np.floor(points[:, :3].min(axis=0)) - 1, 0).astype(int)
    stop = np.minimum(np.ceil(points[:, :3].max(axis=0)) + 2, grid_shape).astype(int)
    if np.any(stop <= start):
        return None
    return [(int(a), int(b)) for a, b in zip(start, stop, strict=True)]


def _assemble(patient_id: str, timepoints: Sequence[TimepointRecord],
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
        if f is None:
            rows.append(ResponseRow(patient_id, tp.index, tp.days, 0, len(targets), None, None,
                                    None, None, False, Response.NE, ("no lesion mask",), None,
                                    None, None, Response.NE, None))
            continue
        total = float(sum(les.volume_ml for les in sets[f].lesions))
        sod = float(sum(measure[f].values()))
        has_targets = bool(targets)
        if f == 0:
            rows.append(ResponseRow(patient_id, tp.index, tp.days, len(sets[f].lesions),
                                    len(targets), sod, None, None, None, False, None, (),
                                    target_volume[0] if has_targets else None, None, None, None,
                                    total))
            continue
        a = assessments[f - 1]
        base_pct, nadir_pct = vol_changes[f - 1] if has_targets else (None, None)
        rows.append(ResponseRow(
            patient_id, tp.index, tp.days, len(sets[f].lesions), len(targets), a.sod_mm,
            a.change_from_baseline_pct, a.change_from_nadir_pct, a.nadir_mm, new[f],
            a.response, a.reasons, target_volume[f] if has_targets else None, base_pct,
            nadir_pct, vol_categories[f - 1], total))
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
                rows.append(LesionRow(**common, lesion=None, status=LesionStatus.VANISHED.value,
                                      volume_ml=0.0, longest_diameter_mm=0.0, short_axis_mm=0.0,
                                      centroid_mm=None, centroid_baseline_mm=None,
                                      volume_change_pct=_change(0.0, first_volume.get(track))))
                continue
            for obs in carriers:
                lesion = lesions[obs.lesion]
                owner = owners[f][obs.lesion]
                if owner != track:
                    rows.append(LesionRow(**common, lesion=lesion.label,
                                          status=LesionStatus.MERGED.value, volume_ml=None,
                                          longest_diameter_mm=None, short_axis_mm=None,
                                          centroid_mm=None, centroid_baseline_mm=None,
                                          volume_change_pct=None, merged_into=owner))
                    continue
                base_c = frames[f].centroids_mm[obs.lesion]
                rows.append(LesionRow(
                    **common, lesion=lesion.label, status=obs.status.value,
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


# ----------------------------------------------------------------------------------- outputs

LESION_COLUMNS: tuple[str, ...] = (
    "patient_id", "timepoint", "days", "track_id", "lesion", "status", "target", "nodal",
    "organ", "volume_ml", "longest_diameter_mm", "short_axis_mm", "centroid_x_mm",
    "centroid_y_mm", "centroid_z_mm", "baseline_x_mm", "baseline_y_mm", "baseline_z_mm",
    "volume_change_pct", "merged_into",
)
RESPONSE_COLUMNS: tuple[str, ...] = (
    "patient_id", "timepoint", "days", "lesions", "targets", "sod_mm",
    "change_from_baseline_pct", "change_from_nadir_pct", "nadir_mm", "new_lesions", "response",
    "reasons", "target_volume_ml", "volume_change_from_baseline_pct",
    "volume_change_from_nadir_pct", "volumetric_response", "total_volume_ml",
    "best_overall_response",
)


def write_outputs(results: Sequence[PatientTracking], out_dir: Path, *,
                  settings: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``lesions.csv``, ``response.csv`` and ``tracks.json`` atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("lesions.csv", "response.csv", "tracks.json")}
    write_text_atomic(paths["lesions.csv"], _csv(LESION_COLUMNS, (
        _lesion_record(row) for result in results for row in result.lesions)))
    write_text_atomic(paths["response.csv"], _csv(RESPONSE_COLUMNS, (
        _response_record(row, result.best_overall_response)
        for result in results for row in result.responses)))
    write_text_atomic(paths["tracks.json"],
                      json.dumps(tracks_document(results, settings=settings), indent=2) + "\n")
    return paths


def tracks_document(results: Sequence[PatientTracking], *,
                    settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``tracks.json`` document (also what ``--json`` prints)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "medseq_version": __version__,
        "settings": dict(settings or {}),
        "patients": [_patient_json(result) for result in results],
    }


def _patient_json(result: PatientTracking) -> dict[str, Any]:
    return {
        "patient_id": result.patient_id,
        "has_mask": result.has_mask,
        "tracked": result.tracked,
        "note": result.note,
        "best_overall_response": result.best_overall_response.value,
        "responder": result.responder,
        "slice_thickness_mm": _num(result.slice_thickness_mm),
        "targets": list(result.targets),
        "tracks": {track: {str(t): labels for t, labels in by_tp.items()}
                   for track, by_tp in result.tracks.items()},
        "lesions": [_jsonable(asdict(row)) for row in result.lesions],
        "responses": [_jsonable(asdict(row)) for row in result.responses],
    }


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Response):
            out[key] = value.value
        elif isinstance(value, float):
            out[key] = _num(value)
        elif isinstance(value, tuple):
            out[key] = [_num(v) if isinstance(v, float) else v for v in value]
        else:
            out[key] = value
    return out


def _num(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 4)


def _lesion_record(row: LesionRow) -> list[str]:
    centroid = row.centroid_mm or (None, None, None)
    base = row.centroid_baseline_mm or (None, None, None)
    return [row.patient_id, str(row.timepoint), str(row.days), row.track_id,
            _cell(row.lesion), row.status, _yes(row.target), _yes(row.nodal), row.organ or "",
            _cell(row.volume_ml), _cell(row.longest_diameter_mm), _cell(row.short_axis_mm),
            *(_cell(v) for v in centroid), *(_cell(v) for v in base),
            _cell(row.volume_change_pct), row.merged_into or ""]


def _response_record(row: ResponseRow, best: Response) -> list[str]:
    return [row.patient_id, str(row.timepoint), str(row.days), str(row.lesions),
            str(row.targets), _cell(row.sod_mm), _cell(row.change_from_baseline_pct),
            _cell(row.change_from_nadir_pct), _cell(row.nadir_mm), _yes(row.new_lesions),
            row.response.value if row.response else "", "; ".join(row.reasons),
            _cell(row.target_volume_ml), _cell(row.volume_change_from_baseline_pct),
            _cell(row.volume_change_from_nadir_pct),
            row.volumetric_response.value if row.volumetric_response else "",
            _cell(row.total_volume_ml), best.value]


def _cell(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _csv(columns: Sequence[str], records: Any) -> str:
    return csv_text([list(columns), *records])
