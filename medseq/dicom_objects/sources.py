"""Find each tracked timepoint's source DICOM series again, in the original input.

The cache keeps no paths to the source files (privacy), so ``export-dicom`` discovers the input
again (``--input``, or the raw input ``track`` was given) and pairs patients by their cache id
(the pseudonym of the discovered PatientID under the cache's key, or the id itself when the
cache kept ids) and timepoints by their order. A pairing is accepted when the series UID equals
the cache's, or the content hash does, or the file count and the voxel grid do (a copied export
has new modification times but the same geometry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseq.dicom_objects.tracking_input import TrackedTimepoint, TrackingRun
from medseq.io.cohort import ImageFormat, Patient, SeriesInfo

GRID_TOLERANCE_MM = 1e-3


@dataclass
class SourceIndex:
    """Source series per ``(cache id, timepoint index)``, and why others are missing."""

    series: dict[tuple[str, int], SeriesInfo] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    """Cache id -> why its images cannot be used (not DICOM, not found, changed)."""


def find_sources(run: TrackingRun, input_path: Path, *, series: str | None = None
                 ) -> SourceIndex:
    """Discover ``input_path`` and pair its DICOM series with the run's timepoints."""
    from medseq.io.discover import discover
    from medseq.preprocess.cache import content_hash
    from medseq.preprocess.pseudonym import pseudonym, read_salt

    cohort = discover(input_path, series=series, require_patients=False)
    index = SourceIndex()
    key = read_salt(run.cache)
    by_cache_id: dict[str, Patient] = {}
    for found in cohort.patients:
        if not run.pseudonymised:
            by_cache_id[found.patient_id] = found
        elif key is not None:
            by_cache_id[pseudonym(found.patient_id, key)] = found
    base = cohort.root if cohort.root.is_dir() else cohort.root.parent
    for tracked in run.patients:
        patient = by_cache_id.get(tracked.patient_id)
        if patient is None:
            index.skipped[tracked.patient_id] = f"not found in {input_path}"
            continue
        for tp in tracked.timepoints:
            if tp.index >= len(patient.timepoints):
                index.skipped[tracked.patient_id] = (
                    f"{input_path} holds {len(patient.timepoints)} timepoint(s), the cache "
                    f"{len(tracked.timepoints)}")
                break
            info = patient.timepoints[tp.index].image
            if info.format is not ImageFormat.DICOM:
                index.skipped[tracked.patient_id] = "images did not come from DICOM"
                break
            hashed = content_hash(info, root=base)[0] if tp.content_hash else ""
            if not same_series(tp, info, hashed):
                index.skipped[tracked.patient_id] = (
                    f"timepoint {tp.index}: the series found in {input_path} is not the one "
                    "preprocessed (other UID, files and grid)")
                break
            index.series[(tracked.patient_id, tp.index)] = info
    return index


def same_series(tp: TrackedTimepoint, info: SeriesInfo, hashed: str) -> bool:
    """Whether ``info`` is the series the cache preprocessed for ``tp`` (module docs)."""
    if tp.series_uid and info.series_uid and tp.series_uid == info.series_uid:
        return True
    if tp.content_hash and hashed == tp.content_hash:
        return True
    if tp.file_count != info.file_count or tp.native_shape is None or info.shape is None:
        return False
    if tuple(tp.native_shape) != tuple(info.shape):
        return False
    if tp.native_affine is None or info.affine is None:
        return False
    return bool(np.allclose(np.asarray(tp.native_affine), np.asarray(info.affine),
                            atol=GRID_TOLERANCE_MM))
