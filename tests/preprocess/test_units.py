"""Small pieces: modality and normalisation, target choice, pseudonyms, hashes, the index."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from medseq.contracts.cache import PatientRecord, TimepointRecord, read_manifest
from medseq.io.cohort import ImageFormat, SeriesInfo
from medseq.io.volume import Volume
from medseq.preprocess.cache import CacheIndex, clear_stale, content_hash, outputs_of
from medseq.preprocess.config import PreprocessConfig
from medseq.preprocess.crops import select_targets
from medseq.preprocess.normalize import detect_modality, intensity_record, normalize
from medseq.preprocess.pipeline import _as_dtype
from medseq.preprocess.pseudonym import load_or_create_salt, pseudonym

CONFIG = PreprocessConfig()


def test_modality_from_setting_header_or_values() -> None:
    ct = np.full((8, 8, 8), -1000, np.int16)
    mr = np.random.default_rng(0).uniform(0, 500, (8, 8, 8)).astype(np.float32)
    assert detect_modality("", ct) == "CT"
    assert detect_modality("", mr) == "MR"
    assert detect_modality("MR", ct) == "MR"
    assert detect_modality("CT", mr) == "CT"
    assert detect_modality("", ct, "MR") == "MR"


def test_ct_window_scaling_and_mr_zscore() -> None:
    values = np.array([-1000, -200, 50, 300, 3000], dtype=np.float32)
    record = intensity_record(values.reshape(5, 1, 1), "CT", CONFIG)
    assert normalize(values, record, CONFIG).tolist() == pytest.approx([0, 0, 0.5, 1, 1])

    rng = np.random.default_rng(1)
    image = np.zeros((40, 40, 40), np.float32)
    image[10:30, 10:30, 10:30] = rng.normal(300, 20, (20, 20, 20))
    record = intensity_record(image, "MR", CONFIG)
    assert record.kind == "mr_zscore"
    assert record.mean == pytest.approx(300, abs=3)  # body only: background is not averaged in
    assert record.std == pytest.approx(20, abs=3)
    body = normalize(image[10:30, 10:30, 10:30], record, CONFIG)
    assert abs(float(body.mean())) < 0.2
    assert float(normalize(image[:2], record, CONFIG).min()) == -CONFIG.mr_clip_z


def test_targets_are_the_largest_lesions_above_the_minimum() -> None:
    mask = np.zeros((40, 40, 40), np.uint8)
    mask[2:12, 2:12, 2:12] = 1  # 1000 voxels = 1 mL at 1 mm
    mask[20:26, 20:26, 20:26] = 3  # 216, any label counts
    mask[30:32, 30:32, 30:32] = 1  # 8 voxels: below 0.1 mL
    mask[12, 12, 12] = 1  # touches the first one diagonally: 26-connected to it
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-5, 7, 0]
    targets = select_targets(Volume(mask, affine), min_ml=0.1, max_targets=5)
    assert [t.index for t in targets] == [0, 1]
    assert targets[0].volume_ml == pytest.approx(1.001)
    assert targets[1].centroid_mm == pytest.approx([22.5 - 5, 22.5 + 7, 22.5])
    assert len(select_targets(Volume(mask, affine), min_ml=0.0, max_targets=2)) == 2
    assert select_targets(Volume(np.zeros((4, 4, 4), np.uint8), affine), min_ml=0,
                          max_targets=5) == []


def test_pseudonyms_are_stable_keyed_and_the_key_is_created_once(tmp_path: Path) -> None:
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_or_create_salt(tmp_path)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1
    assert (tmp_path / "salt.key").stat().st_mode & 0o777 == 0o600
    key = keys[0]
    assert pseudonym("12345", key) == pseudonym("12345", load_or_create_salt(tmp_path))
    assert pseudonym("12345", key) != pseudonym("12345", b"another key of 16+ bytes")
    assert pseudonym("12345", key).startswith("P")
    assert len(pseudonym("12345", key)) == 11
    assert not list(tmp_path.glob(".salt.key*"))  # no temporary files left


def test_content_hash_reuses_unchanged_stat_and_rereads_changed_files(tmp_path: Path) -> None:
    image = tmp_path / "a" / "image.nii"
    image.parent.mkdir()
    image.write_bytes(b"one")
    series = SeriesInfo(format=ImageFormat.NIFTI, files=(image,))
    first = content_hash(series, root=tmp_path)
    assert content_hash(series, root=tmp_path, previous=("sha256:cached", first[1]))[0] == (
        "sha256:cached")
    image.write_bytes(b"two!")
    assert content_hash(series, root=tmp_path, previous=first)[0] != first[0]
    dicom = SeriesInfo(format=ImageFormat.DICOM, files=(image,), series_uid="1.2.3")
    assert content_hash(dicom, root=tmp_path)[0].startswith("stat-sha256:")


def test_concurrent_indexes_keep_each_others_patients(tmp_path: Path) -> None:
    first = CacheIndex.open(tmp_path, config={}, config_hash="h", pseudonymised=True)
    second = CacheIndex.open(tmp_path, config={}, config_hash="h", pseudonymised=True)
    first.commit(PatientRecord(patient_id="Pa", timings={"committed_at": 1.0}))
    second.commit(PatientRecord(patient_id="Pb", timings={"committed_at": 2.0}))
    first.commit(PatientRecord(patient_id="Pc", timings={"committed_at": 3.0}))
    assert set(read_manifest(tmp_path).patients) == {"Pa", "Pb", "Pc"}
    # A lost manifest is rebuilt from the patients' commit records.
    (tmp_path / "manifest.json").unlink()
    CacheIndex.open(tmp_path, config={}, config_hash="h", pseudonymised=True)
    assert set(read_manifest(tmp_path).patients) == {"Pa", "Pb", "Pc"}


def test_clear_stale_removes_old_outputs_and_temporary_files(tmp_path: Path) -> None:
    for name in ("t00_image.nii", "t01_image.nii", ".t00_image.nii.abc.tmp.nii", "notes.txt",
                 "patient.json", "crops.npy", "t00_image_native.nii.gz",
                 "t01_image_native.nii.gz"):
        (tmp_path / name).write_text("x")
    clear_stale(tmp_path, keep=["P1/t00_image.nii", "P1/crops.npy", "P1/t00_image_native.nii.gz"],
                sole_writer=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "crops.npy", "notes.txt", "patient.json", "t00_image.nii", "t00_image_native.nii.gz"]


def test_outputs_of_names_the_native_image_when_recorded() -> None:
    def record(image_native: str | None) -> PatientRecord:
        return PatientRecord(patient_id="P1", timepoints=[TimepointRecord(
            index=0, days=0, days_since_previous=0, file_count=1, content_hash="h",
            image="P1/t00_image.nii", image_native=image_native)])

    assert outputs_of(record("P1/t00_image_native.nii.gz")) == [
        "P1/t00_image.nii", "P1/t00_image_native.nii.gz"]
    assert outputs_of(record(None)) == ["P1/t00_image.nii"]  # a cache from before the field


def test_native_image_dtype_matches_the_registered_image() -> None:
    wide = np.array([-40000, -1024, 0, 3071, 40000], dtype=np.int32)
    assert _as_dtype(wide, np.dtype(np.int16)).tolist() == [-32768, -1024, 0, 3071, 32767]
    hu = np.array([-1024, 40], dtype=np.int16)
    assert _as_dtype(hu, np.dtype(np.int16)) is hu  # no copy of a CT volume
    floats = np.array([-0.6, 2.5, 7.4], dtype=np.float64)
    assert _as_dtype(floats, np.dtype(np.int16)).tolist() == [-1, 2, 7]
    assert floats.tolist() == [-0.6, 2.5, 7.4]  # the source is not rounded in place
    assert _as_dtype(floats, np.dtype(np.float32)).dtype == np.float32
