"""``medseq export-dicom``: each tracked timepoint of a DICOM patient as a SEG and an SR.

Per patient whose images came from DICOM, per timepoint with a lesion mask:

- the source mask on the source image's grid (the cache's ``tNN_mask_native.nii.gz``) is split
  into lesions exactly as ``track`` did (:func:`medseq.tracking.lesions.find_lesions` with the
  run's minimum volume), and each ``tracks.json`` lesion row is matched to its component by
  label (and centroid, when a label has several components);
- ``tNN_SEG.dcm``: one segment per lesion with voxels of its own (:mod:`.seg_writer`);
- ``tNN_SR.dcm``: the TID 1500 report (:mod:`.sr`).

Files go to ``OUT/<patient id>/``, each written under a temporary name and renamed. All UIDs are
derived from the tracking result (:mod:`.uids`), so a rerun rewrites the same objects.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseq.dicom_objects.errors import AnnotationError
from medseq.dicom_objects.grid import ImageGrid
from medseq.dicom_objects.records import LesionReport, TimepointReport
from medseq.dicom_objects.sources import SourceIndex
from medseq.dicom_objects.tracking_input import TrackedPatient, TrackedTimepoint, TrackingRun
from medseq.dicom_objects.uids import derived_uid, tracking_uid
from medseq.errors import CacheError
from medseq.io.cohort import SeriesInfo


@dataclass
class ExportSummary:
    """What ``export-dicom`` wrote and what it left out."""

    identification: str
    written: list[Path] = field(default_factory=list)
    exported: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def export_run(run: TrackingRun, sources: SourceIndex, out_dir: Path, *, keep_ids: bool
               ) -> ExportSummary:
    """Write the SEG and SR of every exportable timepoint of ``run`` into ``out_dir``.

    Raises:
        CacheError: pseudonymised objects asked for, but the cache kept the original ids (its
            ids would name the patients) or has no key to derive study UIDs from.
    """
    from medseq.dicom_objects.identity import KEPT, PSEUDONYMISED
    from medseq.preprocess.pseudonym import read_salt

    key = read_salt(run.cache)
    if not keep_ids and (not run.pseudonymised or key is None):
        why = "kept the original patient ids" if not run.pseudonymised else "has no salt.key"
        raise CacheError(f"the cache {why}, so the objects cannot be pseudonymised; pass "
                         "--keep-ids, or preprocess into a new cache without it", path=run.cache)
    key_hex = key.hex() if key is not None else run.cache.resolve().as_posix()
    summary = ExportSummary(identification=KEPT if keep_ids else PSEUDONYMISED)
    for patient in run.patients:
        if patient.patient_id in sources.skipped:
            summary.skipped[patient.patient_id] = sources.skipped[patient.patient_id]
            continue
        if not patient.tracked:
            summary.skipped[patient.patient_id] = patient.note or "not tracked"
            continue
        try:
            paths = export_patient(patient, sources, out_dir / patient.patient_id,
                                   min_volume_ml=run.min_volume_ml, keep_ids=keep_ids,
                                   key_hex=key_hex)
        except AnnotationError as err:
            summary.skipped[patient.patient_id] = str(err)
            continue
        summary.written.extend(paths)
        summary.exported.append(patient.patient_id)
    return summary


def export_patient(patient: TrackedPatient, sources: SourceIndex, folder: Path, *,
                   min_volume_ml: float, keep_ids: bool, key_hex: str) -> list[Path]:
    """Write one patient's SEG and SR per timepoint with a mask; the paths written."""
    written: list[Path] = []
    for tp in patient.timepoints:
        if tp.mask_native is None:
            continue
        info = sources.series[(patient.patient_id, tp.index)]
        written.extend(export_timepoint(patient, tp, info, folder, min_volume_ml=min_volume_ml,
                                        keep_ids=keep_ids, key_hex=key_hex))
    return written


def export_timepoint(patient: TrackedPatient, tp: TrackedTimepoint, info: SeriesInfo,
                     folder: Path, *, min_volume_ml: float, keep_ids: bool, key_hex: str
                     ) -> list[Path]:
    """Write ``tNN_SEG.dcm`` (when a lesion has voxels) and ``tNN_SR.dcm``; their paths."""
    from medseq.dicom_objects.identity import pseudonymised
    from medseq.dicom_objects.seg_writer import build_seg
    from medseq.dicom_objects.sr import build_sr

    assert tp.mask_native is not None
    labels, affine = _native_mask(tp)
    headers = read_headers(info.files)
    grid = ImageGrid(shape=labels.shape, affine=affine,  # type: ignore[arg-type]
                     series_uid=str(headers[0].SeriesInstanceUID),
                     frame_of_reference_uid=str(headers[0].get("FrameOfReferenceUID", "")))
    segments, lesions = lesion_segments(patient, tp, labels, affine,
                                        min_volume_ml=min_volume_ml)
    if not keep_ids:
        headers = pseudonymised(headers, alias=patient.patient_id, key=key_hex)
    name = f"t{tp.index:02d}"
    base = (patient.run_key, name)
    seg = None
    written = []
    if any(les.segment is not None for les in lesions):
        seg = build_seg(headers, segments, grid, lesions,
                        series_uid=derived_uid("seg-series", *base),
                        sop_uid=derived_uid("seg", *base))
        written.append(write_dataset(seg, folder / f"{name}_SEG.dcm"))
    report = TimepointReport(patient_key=patient.run_key, index=tp.index, days=tp.days,
                             lesions=tuple(lesions), response=tp.response, sod_mm=tp.sod_mm,
                             modality=patient.modality)
    sr = build_sr(headers, report, seg=seg, series_uid=derived_uid("sr-series", *base),
                  sop_uid=derived_uid("sr", *base))
    written.append(write_dataset(sr, folder / f"{name}_SR.dcm"))
    return written


def lesion_segments(patient: TrackedPatient, tp: TrackedTimepoint, labels: np.ndarray,
                    affine: np.ndarray, *, min_volume_ml: float
                    ) -> tuple[np.ndarray, list[LesionReport]]:
    """The segment label array (value n = segment n) and the lesion reports of a timepoint.

    A lesion that split is one segment (all its fragments); its volume is their total and its
    long and short axes are the sums over the fragments (RECIST 1.1 sums a split target).
    """
    from medseq.tracking.lesions import find_lesions

    found = find_lesions(labels, affine, min_volume_ml=min_volume_ml)
    by_track: dict[str, list[Any]] = {}
    for row in tp.lesions:
        by_track.setdefault(row.track_id, []).append(row)
    segments = np.zeros(labels.shape, dtype=np.uint16)
    reports: list[LesionReport] = []
    number = 0
    for track in sorted(by_track, key=_track_order):
        rows = by_track[track]
        owned = [r for r in rows if r.lesion is not None and r.status != "merged"]
        uid = tracking_uid(patient.run_key, track)
        status = rows[0].status if len(rows) == 1 else "split"
        target = any(r.target for r in rows)
        if not owned:
            reports.append(LesionReport(
                track_id=track, tracking_uid=uid, status=status,
                longest_diameter_mm=_sum(r.longest_diameter_mm for r in rows),
                short_axis_mm=_sum(r.short_axis_mm for r in rows),
                volume_ml=_sum(r.volume_ml for r in rows), target=target))
            continue
        number += 1
        for row in owned:
            lesion = _component(found, row, tp)
            segments[found.components == lesion.component] = number
        reports.append(LesionReport(
            track_id=track, tracking_uid=uid, status=status,
            longest_diameter_mm=_sum(r.longest_diameter_mm for r in owned),
            short_axis_mm=_sum(r.short_axis_mm for r in owned),
            volume_ml=_sum(r.volume_ml for r in owned), segment=number, target=target))
    return segments, reports


def read_headers(files: Sequence[Path]) -> list[Any]:
    """The source series' datasets without pixel data (enough for SEG and SR)."""
    import pydicom

    headers = []
    for path in files:
        try:
            headers.append(pydicom.dcmread(path, stop_before_pixels=True))
        except Exception as err:  # pydicom raises many types for broken files
            raise AnnotationError(f"source image unreadable ({type(err).__name__})",
                                  path=path) from None
    return headers


def write_dataset(ds: Any, path: Path) -> Path:
    """Save ``ds`` at ``path`` atomically (temporary name, then rename)."""
    import pydicom

    from medseq.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
    return path


def _native_mask(tp: TrackedTimepoint) -> tuple[np.ndarray, np.ndarray]:
    from medseq.io.nifti import load_nifti, mask_labels

    assert tp.mask_native is not None
    if not tp.mask_native.is_file():
        raise CacheError("mask named in manifest.json is missing (rerun preprocess)",
                         path=tp.mask_native)
    volume = load_nifti(tp.mask_native)
    return mask_labels(volume.array, path=tp.mask_native), volume.affine


def _component(found: Any, row: Any, tp: TrackedTimepoint) -> Any:
    candidates = [les for les in found.lesions if les.label == row.lesion]
    if not candidates:
        raise CacheError(f"timepoint {tp.index}: lesion {row.lesion} of track {row.track_id} is "
                         "not in the cached mask; rerun medseq track on this cache",
                         path=tp.mask_native)
    if len(candidates) == 1 or row.centroid_mm is None:
        return candidates[0]
    return min(candidates, key=lambda les: float(np.linalg.norm(
        np.subtract(les.centroid_mm, row.centroid_mm))))


def _track_order(track: str) -> tuple[int, str]:
    match = re.fullmatch(r"[A-Za-z]*(\d+)", track)
    return (int(match.group(1)) if match else 0, track)


def _sum(values: Any) -> float | None:
    numbers = [v for v in values if v is not None]
    return float(sum(numbers)) if numbers else None
