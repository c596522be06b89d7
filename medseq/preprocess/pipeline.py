"""One patient through the pipeline: load, register to baseline, resample, crop, write.

Runs inside a worker process: it takes a picklable :class:`PatientJob` and returns the
patient's :class:`PatientRecord`; the caller commits it to the cache index. Whole volumes stay
in their stored type (int16 HU for CT) and are resampled once, straight from the source grid
onto the baseline's canonical grid through the registration; crops are resampled from the
source too, only their own voxels. Each source image is also kept, unresampled, on its own grid
(``tNN_image_native.nii.gz``) next to its source mask.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseq.contracts.cache import (
    PatientRecord,
    PatientStatus,
    TargetRecord,
    TimepointRecord,
)
from medseq.errors import InputDataError
from medseq.io.atomic import atomic_path
from medseq.io.cohort import Patient, Timepoint
from medseq.io.volume import Volume
from medseq.preprocess.config import PreprocessConfig
from medseq.preprocess.normalize import Modality, detect_modality, intensity_record
from medseq.preprocess.orient import Grid, canonical_grid

CT_OUTSIDE_HU = -1024.0
"""What CT voxels outside the source scan become (air)."""
MIN_EXTENT_VOXELS = 4
"""Fewer voxels along an axis (a single slice, a localizer) is no 3D scan: registration,
lesion measurement and crops need a volume."""


class RegistrationFailedError(InputDataError):
    """A follow-up could not be registered to the baseline (the check flagged it)."""


@dataclass(frozen=True)
class SourceHashes:
    """What the parent process hashed for one timepoint (see :mod:`medseq.preprocess.cache`)."""

    content_hash: str
    source_stat: str
    mask_hash: str | None = None
    mask_stat: str | None = None


@dataclass(frozen=True)
class PatientJob:
    """Everything a worker needs for one patient (picklable)."""

    patient: Patient
    cache_id: str
    cache_dir: Path
    config: PreprocessConfig
    target_spacing: tuple[float, float, float]
    input_hash: str
    hashes: tuple[SourceHashes, ...]
    series_ids: tuple[str | None, ...]
    """Series UID per timepoint as the manifest stores it (keyed-hashed unless --keep-ids)."""


@dataclass(frozen=True)
class _Native:
    """The source grid of a timepoint, kept after its voxels are released."""

    affine: np.ndarray
    shape: tuple[int, int, int]


@dataclass
class Timings:
    """Seconds spent per stage, summed over a patient's timepoints."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def process_patient(job: PatientJob) -> PatientRecord:
    """Preprocess one patient into ``cache_dir/<cache_id>/`` and describe the result.

    Raises:
        InputDataError: unreadable inputs, undated follow-ups, a failed registration.
    """
    from medseq.io.load import load_image, load_timepoint_mask
    from medseq.preprocess.crops import cut_crops, select_targets
    from medseq.preprocess.register import identity_result, prepare_fixed, register_rigid
    from medseq.preprocess.resample import resample, resample_into, to_sitk

    patient, config = job.patient, job.config
    timepoints = patient.timepoints
    _check_dates(timepoints)
    folder = job.cache_dir / job.cache_id
    folder.mkdir(parents=True, exist_ok=True)
    timings = Timings()
    has_mask = all(tp.mask is not None for tp in timepoints)

    with timings.stage("read"):
        baseline = _checked_extent(load_image(timepoints[0].image), timepoints[0])
    modality = detect_modality(timepoints[0].image.modality, baseline.array, config.modality)
    grid = canonical_grid(baseline.shape, baseline.affine, job.target_spacing)
    outside = CT_OUTSIDE_HU if modality == "CT" else 0.0
    with timings.stage("register"):
        fixed = prepare_fixed(baseline, modality=modality, config=config.registration)

    targets: list[TargetRecord] = []
    records: list[TimepointRecord] = []
    crops: list[np.ndarray] = []
    volume: Volume | None = baseline
    del baseline  # only ``volume`` may hold voxels, so each scan is freed after its turn
    for index, tp in enumerate(timepoints):
        name = f"t{index:02d}"
        if volume is None:
            with timings.stage("read"):
                volume = _checked_extent(load_image(tp.image), tp)
        with timings.stage("read"):
            mask = load_timepoint_mask(tp, like=volume, roi=config.roi)
        if index == 0:
            # Targets come from the baseline mask alone, so a patient annotated only at baseline
            # still gets crops (follow-ups without a mask: an empty mask channel, which the
            # learned tracker's masks fill in for ``predict --tracker``).
            if mask is not None:
                targets = select_targets(mask, min_ml=config.min_lesion_ml,
                                         max_targets=config.max_targets)
            result = identity_result()
        else:
            with timings.stage("register"):
                result = register_rigid(fixed, volume, modality=modality,
                                        config=config.registration)
            if not result.record.ok and config.registration.on_failure == "fail":
                raise RegistrationFailedError(
                    f"{name}: {result.record.message} (set registration.on_failure: keep to "
                    "keep it flagged instead)")
        baseline_to_source = result.baseline_to_followup if index else None
        intensity = intensity_record(volume.array, modality, config)
        native = _Native(affine=volume.affine, shape=volume.shape)
        dtype = _output_dtype(volume, modality)
        with timings.stage("write"):
            # Before ITK takes its copy: at most one cast copy of the voxels is alive at once.
            _save_native_image(volume, dtype, folder / f"{name}_image_native.nii.gz")
        with timings.stage("resample"):
            image = to_sitk(volume.array, volume.affine)
            volume = None  # ITK holds its own copy now: the numpy one can go (memory)
            registered = resample_into(image, grid, dtype=dtype,
                                       grid_to_source=baseline_to_source, default=outside)
            mask_image = None
            registered_mask = None
            if mask is not None:
                # A bool array viewed as uint8: one copy of the mask, not two.
                mask_image = to_sitk((np.asarray(mask.array) > 0).view(np.uint8), mask.affine)
                registered_mask = resample(mask_image, grid, grid_to_source=baseline_to_source,
                                           interpolation="nearest")
        with timings.stage("write"):
            record = _write_timepoint(
                folder, job, index, tp, native, mask, registered, registered_mask, grid)
        del registered, registered_mask
        record.transform_to_baseline = _rounded(result.transform_to_baseline)
        record.registration = result.record
        record.intensity = intensity.model_dump(exclude_none=True)  # type: ignore[attr-defined]
        records.append(record)
        if targets:
            with timings.stage("resample"):
                crops.append(cut_crops(image, mask_image, targets,
                                       baseline_to_source=baseline_to_source
                                       if baseline_to_source is not None else np.eye(4),
                                       intensity=intensity, default=outside, config=config))
        del image, mask_image, mask

    crops_rel = None
    if crops:
        crops_rel = f"{job.cache_id}/crops.npy"
        with timings.stage("write"):
            _save_array(job.cache_dir / crops_rel, np.stack(crops))
    return PatientRecord(
        patient_id=job.cache_id, status=PatientStatus.OK, input_hash=job.input_hash,
        modality=modality,
        label=patient.label, has_mask=has_mask, timepoints=records, targets=targets,
        crops=crops_rel,
        crop_shape=[len(records), len(targets), 2, *[config.crop_size] * 3] if crops else None,
        grid_shape=list(grid.shape), grid_affine=_rounded(grid.affine),
        timings={k: round(v, 3) for k, v in timings.seconds.items()},
    )


def _write_timepoint(folder: Path, job: PatientJob, index: int, tp: Timepoint, native: _Native,
                     mask: Volume | None, registered: np.ndarray,
                     registered_mask: np.ndarray | None, grid: Grid) -> TimepointRecord:
    from medseq.io.nifti import save_nifti

    name = f"t{index:02d}"
    rel = f"{job.cache_id}/{name}"
    save_nifti(Volume(registered, grid.affine), folder / f"{name}_image.nii")
    mask_rel = native_rel = None
    volume_ml = None
    if mask is not None and registered_mask is not None:
        save_nifti(Volume(registered_mask.astype(np.uint8, copy=False), grid.affine),
                   folder / f"{name}_mask.nii")
        save_nifti(mask, folder / f"{name}_mask_native.nii.gz")
        mask_rel, native_rel = f"{rel}_mask.nii", f"{rel}_mask_native.nii.gz"
        volume_ml = round(float(np.count_nonzero(mask.array)) * mask.voxel_volume_ml, 4)
    previous_days = job.patient.timepoints[index - 1].days if index else 0
    days = tp.days or 0
    hashes = job.hashes[index]
    return TimepointRecord(
        index=index, days=days, days_since_previous=days - (previous_days or 0),
        series_uid=job.series_ids[index], file_count=tp.image.file_count,
        content_hash=hashes.content_hash, source_stat=hashes.source_stat,
        mask_hash=hashes.mask_hash, mask_stat=hashes.mask_stat,
        image=f"{rel}_image.nii", image_native=f"{rel}_image_native.nii.gz",
        mask=mask_rel, mask_native=native_rel,
        native_affine=_rounded(native.affine), native_shape=list(native.shape),
        lesion_volume_ml=volume_ml,
    )


def _save_native_image(volume: Volume, dtype: np.dtype, path: Path) -> None:
    """The source image on its own grid (``native_affine``), in the registered image's
    ``dtype``, so trackers can segment a scan where its source mask lives."""
    from medseq.io.nifti import save_nifti

    save_nifti(Volume(_as_dtype(volume.array, dtype), volume.affine), path)


def _as_dtype(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``array`` in ``dtype`` (itself when it already is), rounded and clipped like
    :func:`~medseq.preprocess.resample.round_to_dtype` for an integer type; never edits
    ``array``."""
    from medseq.preprocess.resample import round_to_dtype

    if array.dtype == dtype:
        return array
    if not np.issubdtype(dtype, np.integer):
        return array.astype(dtype)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(array, info.min, info.max).astype(dtype, copy=False)
    return round_to_dtype(array.astype(np.float32), dtype)


def _checked_extent(volume: Volume, tp: Timepoint) -> Volume:
    """``volume``, unless it is too thin along an axis to be a 3D scan."""
    if min(volume.shape) < MIN_EXTENT_VOXELS:
        files = tp.image.files
        where = files[0] if len(files) == 1 else Path(os.path.commonpath(files))
        shape = "x".join(str(n) for n in volume.shape)
        raise InputDataError(
            f"image is {shape} voxels: not a 3D scan (medseq needs at least "
            f"{MIN_EXTENT_VOXELS} voxels along each axis; a single slice or a localizer?)",
            path=where)
    return volume


def _check_dates(timepoints: tuple[Timepoint, ...]) -> None:
    if len(timepoints) > 1 and any(tp.days is None for tp in timepoints):
        raise InputDataError("follow-up scans have no dates, so days from baseline are unknown; "
                             "add dates (timepoints.csv, folder names or the manifest)")


def _output_dtype(volume: Volume, modality: Modality) -> np.dtype:
    if modality == "CT" and np.issubdtype(volume.array.dtype, np.integer):
        return np.dtype(np.int16)
    return np.dtype(np.float32)


def _save_array(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def _rounded(matrix: np.ndarray) -> list[list[float]]:
    return [[round(float(v), 6) for v in row] for row in np.asarray(matrix)]


__all__ = ["PatientJob", "RegistrationFailedError", "SourceHashes", "process_patient"]
