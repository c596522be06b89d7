"""Generate a synthetic longitudinal CT cohort with exact ground truth.

Layout of ``OUT`` (``docs/sample-data.md`` is the contract):

- ``nifti/<patient>/<YYYY-MM-DD>/image.nii.gz`` + ``mask.nii.gz`` for NIfTI patients;
- ``dicom/<patient>/<study>/<series>/<files>`` (random names) for DICOM patients, with their
  masks in ``masks/<patient>/<timepoint>.nii.gz`` on the grid the DICOM series loads into;
- ``ground_truth.json``, ``labels.csv``, ``manifest.csv``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseq.csv_cells import csv_text
from medseq.data.synthetic import portable
from medseq.data.synthetic.dicom_writer import (
    COMPRESSIONS,
    StudyHeader,
    fake_patient,
    random_name,
    uid,
    write_ct_series,
    write_localizer,
)
from medseq.data.synthetic.nifti_writer import (
    GZIP_LEVEL,
    IMAGE_GZIP_LEVEL,
    write_atomic,
    write_nifti,
)
from medseq.data.synthetic.plan import SIZES, PatientPlan, plan_patient
from medseq.data.synthetic.render import render_scan
from medseq.data.synthetic.truth import PatientTruth, label_volume, patient_truth

SCHEMA_VERSION = 1
FORMATS = ("dicom", "nifti", "both")

Progress = Callable[[int, int], None]
"""``progress(done, total)``, called in the main process as patients finish."""


@dataclass(frozen=True)
class CohortSpec:
    """Validated settings of one generated cohort (what ``ground_truth.json`` records)."""

    patients: int
    timepoints: tuple[int, int]
    fmt: str
    size: str
    seed: int
    repositioning_mm: float | None
    lesions: tuple[int, int]
    dicom_compression: str

    def __post_init__(self) -> None:
        if self.patients < 1:
            raise ValueError(f"patients must be >= 1, got {self.patients}")
        lo, hi = self.timepoints
        if not 2 <= lo <= hi <= 12:
            raise ValueError(
                f"timepoints must satisfy 2 <= min <= max <= 12, got {self.timepoints}"
            )
        lo, hi = self.lesions
        if not 1 <= lo <= hi <= 10:
            raise ValueError(f"lesions must satisfy 1 <= min <= max <= 10, got {self.lesions}")
        if self.fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {FORMATS}, got {self.fmt!r}")
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {tuple(SIZES)}, got {self.size!r}")
        if self.dicom_compression not in COMPRESSIONS:
            raise ValueError(
                f"dicom_compression must be one of {COMPRESSIONS}, got {self.dicom_compression!r}"
            )
        if self.repositioning_mm is not None and self.repositioning_mm < 0:
            raise ValueError(f"repositioning_mm must be >= 0, got {self.repositioning_mm}")

    def patient_format(self, index: int) -> str:
        """``dicom`` or ``nifti`` for patient ``index`` (``both`` alternates, DICOM first)."""
        if self.fmt == "both":
            return "dicom" if index % 2 == 0 else "nifti"
        return self.fmt

    def plan(self, index: int) -> PatientPlan:
        """The plan of patient ``index``."""
        return plan_patient(
            index,
            seed=self.seed,
            size=SIZES[self.size],
            fmt=self.patient_format(index),
            timepoints=self.timepoints,
            lesions=self.lesions,
            repositioning_mm=self.repositioning_mm,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {
            "name": "medseq.data.synthetic",
            "patients": self.patients,
            "timepoints": list(self.timepoints),
            "format": self.fmt,
            "size": self.size,
            "seed": self.seed,
            "repositioning_mm": self.repositioning_mm,
            "lesions": list(self.lesions),
            "dicom_compression": self.dicom_compression,
        }


def generate_cohort(
    out: Path,
    *,
    patients: int = 12,
    timepoints: tuple[int, int] = (2, 6),
    fmt: str = "both",
    size: str = "small",
    seed: int = 0,
    workers: int = 1,
    repositioning_mm: float | None = None,
    lesions: tuple[int, int] = (1, 5),
    dicom_compression: str = "none",
    progress: Progress | None = None,
) -> Path:
    """Write a synthetic longitudinal cohort into ``out`` and return ``out``.

    Args:
        out: output folder (created if missing; existing files of the same names are replaced).
        patients: number of patients.
        timepoints: (min, max) scans per patient, drawn uniformly.
        fmt: ``dicom``, ``nifti`` or ``both`` (patients alternate, DICOM first).
        size: ``small`` (96x96x48), ``medium`` (192x192x96) or ``large`` (512x512x240).
        seed: the cohort seed; the same seed writes byte-identical files.
        workers: worker processes (patients are independent).
        repositioning_mm: largest repositioning translation per axis (default 8 mm with rotations
            up to 4 degrees; 0 disables repositioning, smaller values scale it down).
        lesions: (min, max) baseline lesions per patient.
        dicom_compression: ``none``, ``rle`` (RLE Lossless) or ``jpeg2000`` (JPEG 2000 Lossless).
        progress: called as ``progress(done, total)`` after each patient.

    Returns:
        ``out``, holding ``ground_truth.json``, ``labels.csv`` and ``manifest.csv``.
    """
    spec = CohortSpec(
        patients=patients, timepoints=(int(timepoints[0]), int(timepoints[1])), fmt=fmt,
        size=size, seed=seed, repositioning_mm=repositioning_mm,
        lesions=(int(lesions[0]), int(lesions[1])), dicom_compression=dicom_compression,
    )
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict[str, Any]] = {}
    if workers == 1 or patients == 1:
        for index in range(patients):
            results[index] = _patient_job(spec, out, index)
            if progress is not None:
                progress(len(results), patients)
    else:
        with ProcessPoolExecutor(max_workers=min(workers, patients)) as pool:
            futures = {pool.submit(_patient_job, spec, out, i): i for i in range(patients)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if progress is not None:
                    progress(len(results), patients)
    records = [results[i] for i in range(patients)]
    _write_tables(out, spec, records)
    return out


def simulate_cohort(
    *,
    patients: int,
    timepoints: tuple[int, int] = (2, 6),
    size: str = "medium",
    seed: int = 0,
    lesions: tuple[int, int] = (1, 5),
    fmt: str = "both",
    repositioning_mm: float | None = None,
) -> list[dict[str, Any]]:
    """Ground truth of a cohort without rendering or writing images (for benchmarks).

    Masks are still rasterised on each scan's grid, so measurements, RECIST responses and labels
    are exactly those :func:`generate_cohort` records for the same settings (the records lack
    only the ``image`` and ``mask`` paths).
    """
    spec = CohortSpec(
        patients=patients, timepoints=timepoints, fmt=fmt, size=size, seed=seed,
        repositioning_mm=repositioning_mm, lesions=lesions, dicom_compression="none",
    )
    out = []
    for index in range(patients):
        plan = spec.plan(index)
        out.append(_patient_record(plan, patient_truth(plan), paths=None))
    return out


def _patient_job(spec: CohortSpec, out: Path, index: int) -> dict[str, Any]:
    plan = spec.plan(index)
    truth = patient_truth(plan)
    paths = _write_patient(spec, out, plan, truth)
    return _patient_record(plan, truth, paths=paths)


def _write_patient(
    spec: CohortSpec, out: Path, plan: PatientPlan, truth: PatientTruth
) -> list[tuple[str, str]]:
    """Render and write every scan; returns (image, mask) paths relative to ``out``."""
    files_rng = np.random.default_rng(np.random.SeedSequence([spec.seed, plan.index, 4]))
    header = fake_patient(files_rng, plan.patient_id)
    paths: list[tuple[str, str]] = []
    for t, scan in enumerate(plan.scans):
        hu = render_scan(plan, t, truth.scans[t], seed=spec.seed)
        mask = label_volume(truth.scans[t], scan.grid.shape)
        if plan.fmt == "nifti":
            folder = out / "nifti" / plan.patient_id / scan.date.isoformat()
            level = GZIP_LEVEL if plan.size.name == "small" else IMAGE_GZIP_LEVEL
            write_nifti(folder / "image.nii.gz", hu, scan.grid.affine, level=level)
            write_nifti(folder / "mask.nii.gz", mask, scan.grid.affine)
            rel = folder.relative_to(out).as_posix()
            paths.append((f"{rel}/image.nii.gz", f"{rel}/mask.nii.gz"))
            continue
        # Settings that change the pixels are in the UIDs: different files, different UIDs.
        study_key = (spec.seed, spec.size, spec.dicom_compression, plan.patient_id, scan.name)
        study = StudyHeader(
            study_uid=uid(*study_key, "study"),
            frame_uid=uid(*study_key, "frame"),
            accession=f"{int(files_rng.integers(10**7, 10**8))}",
            date=scan.date,
            minutes=scan.acquisition_minutes,
            study_id=str(t + 1),
        )
        study_dir = out / "dicom" / plan.patient_id / random_name(files_rng)
        if scan.localizer:
            write_localizer(
                study_dir / random_name(files_rng), hu, scan.grid, patient=header, study=study,
                series_uid=uid(*study_key, "localizer"), rng=files_rng,
            )
        series_dir = study_dir / random_name(files_rng)
        write_ct_series(
            series_dir, hu, scan.grid, patient=header, study=study,
            series_uid=uid(*study_key, "ct"), series_number=2, signed=plan.signed_pixels,
            compression=spec.dicom_compression, rng=files_rng,
        )
        mask_path = out / "masks" / plan.patient_id / f"{scan.name}.nii.gz"
        write_nifti(mask_path, mask, scan.grid.affine)
        paths.append(
            (series_dir.relative_to(out).as_posix(), mask_path.relative_to(out).as_posix())
        )
    return paths


def _patient_record(
    plan: PatientPlan, truth: PatientTruth, *, paths: list[tuple[str, str]] | None
) -> dict[str, Any]:
    """The patient's entry of ``ground_truth.json``."""
    baseline = [les for les in plan.lesions if les.course.appear_day == 0]
    weights = np.array([max(les.course.volumes_ml[0], 1e-6) for les in baseline])
    cue_rim = np.array([les.course.rim_change_hu for les in baseline])
    cue_nec = np.array([les.course.necrosis_change for les in baseline])
    cue_tex = np.array([les.course.texture_hu for les in baseline])
    timepoints = []
    for t, (scan, scan_truth) in enumerate(zip(plan.scans, truth.scans, strict=True)):
        inverse = portable.affine_inverse(scan.motion)
        lesions = []
        for les in scan_truth.lesions:
            m = les.measurement
            centroid = np.asarray(m.centroid_mm)
            lesions.append({
                "lesion_id": les.plan.lesion_id,
                "organ": les.plan.organ,
                "volume_ml": _r(m.volume_ml),
                "voxels": m.voxels,
                "longest_diameter_mm": _r(m.longest_diameter_mm),
                "short_axis_mm": _r(m.short_axis_mm),
                "centroid_mm": [_r(v) for v in centroid],
                "centroid_baseline_mm": [
                    _r(v) for v in portable.apply(inverse, centroid)
                ],
                "new": les.new,
            })
        assessment = truth.assessments[t - 1] if t > 0 else None
        sod = truth.baseline_sod_mm if assessment is None else assessment.sod_mm
        entry: dict[str, Any] = {
            "timepoint": scan.name,
            "date": scan.date.isoformat(),
            "days": scan.days,
            "motion": _matrix(scan.motion),
            "spacing": [_r(v) for v in scan.grid.spacing],
            "shape": list(scan.grid.shape),
            "affine": _matrix(scan.grid.affine),
            "lesions": lesions,
            "recist": {
                "sod_mm": _r(sod),
                "response": None if assessment is None else assessment.response.value,
                "change_from_baseline_pct": None if assessment is None
                or assessment.change_from_baseline_pct is None
                else _r(assessment.change_from_baseline_pct),
            },
            "volume_total_ml": _r(sum(les.measurement.volume_ml for les in scan_truth.lesions)),
        }
        if paths is not None:
            entry["image"], entry["mask"] = paths[t]
        timepoints.append(entry)
    return {
        "patient_id": plan.patient_id,
        "format": plan.fmt,
        "label": truth.label,
        "best_overall_response": truth.best_response.value,
        "sensitivity": _r(plan.dynamics.sensitivity),
        "onset_delay_days": _r(plan.dynamics.onset_delay_days),
        "resistance_day": _r(plan.dynamics.resistance_day),
        "targets": list(truth.targets),
        "response_cues": {
            "rim_change_hu": _r(float(np.average(cue_rim, weights=weights))) if baseline else 0.0,
            "necrosis_change": _r(float(np.average(cue_nec, weights=weights))) if baseline else 0.0,
            "texture_hu": _r(float(np.average(cue_tex, weights=weights))) if baseline else 0.0,
        },
        "lesions": [
            {
                "lesion_id": les.lesion_id,
                "organ": les.organ,
                "appear_day": les.course.appear_day,
                "sensitivity": _r(les.course.sensitivity),
                "rim_change_hu": _r(les.course.rim_change_hu),
                "necrosis_change": _r(les.course.necrosis_change),
                "texture_hu": _r(les.course.texture_hu),
            }
            for les in plan.lesions
        ],
        "timepoints": timepoints,
    }


def _write_tables(out: Path, spec: CohortSpec, records: list[dict[str, Any]]) -> None:
    truth = {"schema_version": SCHEMA_VERSION, "generator": spec.as_dict(), "patients": records}
    write_atomic(out / "ground_truth.json", (json.dumps(truth, indent=1) + "\n").encode())
    labels = [["patient_id", "label"]] + [[r["patient_id"], r["label"]] for r in records]
    write_atomic(out / "labels.csv", _csv(labels))
    manifest = [["patient_id", "timepoint", "date", "image", "mask", "label"]]
    for r in records:
        for tp in r["timepoints"]:
            manifest.append(
                [r["patient_id"], tp["timepoint"], tp["date"], tp["image"], tp["mask"], r["label"]]
            )
    write_atomic(out / "manifest.csv", _csv(manifest))


def _csv(rows: list[list[Any]]) -> bytes:
    return csv_text(rows).encode()


def _r(value: float) -> float:
    return round(float(value), 6)


def _matrix(matrix: np.ndarray) -> list[list[float]]:
    return [[_r(v) + 0.0 for v in row] for row in np.asarray(matrix)]


