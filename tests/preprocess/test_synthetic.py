"""Preprocessing a generated cohort (DICOM and NIfTI patients) with known repositioning."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseq.contracts.cache import read_manifest
from medseq.data.synthetic.cohort import generate_cohort
from medseq.io.discover import discover
from medseq.preprocess.config import PreprocessConfig
from medseq.preprocess.runner import run_preprocess


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = generate_cohort(tmp_path_factory.mktemp("synthetic"), patients=3, timepoints=(3, 3),
                           fmt="both", size="small", seed=11)
    cache = tmp_path_factory.mktemp("synthetic_cache")
    summary = run_preprocess(discover(root / "manifest.csv"), cache, config=PreprocessConfig(),
                             keep_ids=True)
    assert not summary.failed, summary.failed
    assert summary.processed == 3
    return root, cache


def test_registration_error_at_lesion_centroids(generated: tuple[Path, Path]) -> None:
    root, cache = generated
    truth = json.loads((root / "ground_truth.json").read_text())
    manifest = read_manifest(cache)
    errors = []
    for patient in truth["patients"]:
        record = manifest.patients[patient["patient_id"]]
        for scan, timepoint in zip(patient["timepoints"], record.timepoints, strict=True):
            assert timepoint.registration.ok, timepoint.registration.message
            matrix = np.asarray(timepoint.transform_to_baseline)
            for lesion in scan["lesions"]:
                if lesion.get("new"):
                    continue
                here = np.array([*lesion["centroid_mm"], 1.0])
                errors.append(np.linalg.norm(
                    (matrix @ here)[:3] - np.asarray(lesion["centroid_baseline_mm"])))
    errors_mm = np.asarray(errors)
    assert len(errors_mm) >= 6
    assert np.median(errors_mm) <= 1.0, errors_mm
    assert np.percentile(errors_mm, 95) <= 2.0, errors_mm


def test_dicom_patients_record_series_and_stat_hash(generated: tuple[Path, Path]) -> None:
    root, cache = generated
    truth = json.loads((root / "ground_truth.json").read_text())
    manifest = read_manifest(cache)
    dicom = [p for p in truth["patients"] if p["format"] == "dicom"]
    assert dicom
    for patient in dicom:
        record = manifest.patients[patient["patient_id"]]
        assert record.label == patient["label"]
        for timepoint in record.timepoints:
            assert timepoint.series_uid
            assert timepoint.file_count > 1
            assert timepoint.content_hash.startswith("stat-sha256:")
            assert (cache / timepoint.image).is_file()


def test_dicom_names_and_dates_stay_out_of_the_cache(generated: tuple[Path, Path]) -> None:
    root, cache = generated
    secrets: set[bytes] = set()
    for path in sorted((root / "dicom").rglob("*"))[:400]:
        if path.is_file():
            header = pydicom.dcmread(path, stop_before_pixels=True)
            secrets.add(str(header.PatientName).encode())
            secrets.add(str(header.get("StudyDate", "")).encode())
            secrets.add(str(header.get("InstitutionName", "")).encode())
    secrets.discard(b"")
    assert secrets
    for path in cache.rglob("*"):
        if path.is_file() and path.name != "salt.key":
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            for secret in secrets:
                assert secret not in data, (path.name, secret)
