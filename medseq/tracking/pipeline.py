"""Track lesions and assess response for every patient of a preprocessing cache.

Per patient: measure each timepoint's lesions on the source mask's own grid and carry them onto
the registered baseline grid (:mod:`medseq.tracking.grid`), link timepoints
(:mod:`medseq.tracking.match`), pick RECIST targets at baseline and assess every follow-up
(:mod:`medseq.tracking.assemble`, :mod:`medseq.tracking.recist`). The results are the records of
:mod:`medseq.contracts.tracks`; :mod:`medseq.tracking.outputs` writes them (``lesions.csv``,
``response.csv``, ``tracks.json``, documented in ``docs/track.md``) and
:mod:`medseq.tracking.stored` keeps a cache's tracking so later stages read it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from medseq.contracts.cache import PatientRecord, read_manifest
from medseq.contracts.tracks import PatientTracking, Response
from medseq.errors import InputDataError
from medseq.tracking.assemble import assemble
from medseq.tracking.grid import baseline_grid, measure_timepoint, registered_frame
from medseq.tracking.lesion_info import LesionInfo, read_lesion_info
from medseq.tracking.lesions import DEFAULT_MIN_VOLUME_ML, LesionSet
from medseq.tracking.match import Frame, MatchSettings, track_frames

NO_MASK_NOTE = "no lesion mask: not tracked"


def track_cache(
    cache_dir: Path,
    *,
    min_volume_ml: float = DEFAULT_MIN_VOLUME_ML,
    lesion_info: Path | None = None,
    settings: MatchSettings | None = None,
    shard: tuple[int, int] | None = None,
    patients: Collection[str] | None = None,
) -> list[PatientTracking]:
    """Track every patient of ``cache_dir`` (id order); failed ones are listed, not tracked.

    Args:
        cache_dir: a cache written by ``medseq preprocess`` (holds ``manifest.json``).
        min_volume_ml: components smaller than this are not lesions.
        lesion_info: optional CSV of organs and nodal status (:mod:`medseq.tracking.lesion_info`).
        settings: matching thresholds.
        shard: ``(k, n)`` to track only every n-th patient starting at the k-th (1-based).
        patients: track only these cache ids (instead of ``shard``).

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
    if patients is not None:
        records = [record for record in records if record.patient_id in set(patients)]
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
    grid_shape, grid_affine = baseline_grid(cache_dir, with_mask[0])
    sets: list[LesionSet] = []
    frames: list[Frame] = []
    for tp in with_mask:
        lesion_set, transform = measure_timepoint(cache_dir, tp, min_volume_ml)
        sets.append(lesion_set)
        frames.append(registered_frame(lesion_set, transform, grid_shape, grid_affine))
    tracking = track_frames(frames, settings)
    result = assemble(record.patient_id, timepoints, with_mask, sets, frames, tracking,
                      lesion_info)
    flagged = [f"t{tp.index:02d}" for tp in with_mask if not tp.registration.ok]
    if flagged:
        note = f"registration flagged at {', '.join(flagged)}: check the matches"
        result = result.model_copy(update={"note": note})
    return result


def _untracked(patient_id: str, *, has_mask: bool, note: str) -> PatientTracking:
    return PatientTracking(patient_id=patient_id, has_mask=has_mask, lesions=[], responses=[],
                           best_overall_response=Response.NE, tracked=False, note=note)
