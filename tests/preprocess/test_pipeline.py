"""A whole preprocessing run on phantom cohorts: outputs, manifest, reruns, failures, shards."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseq.contracts.cache import read_manifest
from medseq.io.discover import discover
from medseq.io.nifti import load_nifti
from medseq.preprocess.config import PreprocessConfig
from medseq.preprocess.pseudonym import load_or_create_salt, pseudonym
from medseq.preprocess.runner import run_preprocess
from tests.preprocess.conftest import (
    MOTION_1,
    MOTION_2,
    cache_with_salt_of,
    file_hashes,
    manifest_content,
)
from tests.preprocess.phantom import DEFAULT_LESIONS

CONFIG = PreprocessConfig()


def run(manifest: Path, cache: Path, **kwargs: object):
    return run_preprocess(discover(manifest), cache, config=kwargs.pop("config", CONFIG),
                          **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def cached(reference_cache: Path) -> Path:
    return reference_cache


def test_manifest_describes_every_patient_and_timepoint(cached: Path) -> None:
    manifest = read_manifest(cached)
    key = load_or_create_salt(cached)
    jane = manifest.patients[pseudonym("Doe^Jane", key)]
    assert re.fullmatch(r"P[0-9a-f]{10}", jane.patient_id)
    assert jane.status == "ok"
    assert jane.label == 1
    assert jane.has_mask
    assert jane.modality == "CT"
    assert [tp.days for tp in jane.timepoints] == [0, 61, 120]
    assert [tp.days_since_previous for tp in jane.timepoints] == [0, 61, 59]
    assert manifest.fingerprint["target_spacing"] == [4.0, 4.0, 5.0]
    assert manifest.config_hash.startswith("sha256:")
    for tp in jane.timepoints:
        assert tp.file_count == 1
        assert tp.content_hash.startswith("sha256:")
        assert tp.image == f"{jane.patient_id}/t{tp.index:02d}_image.nii"
        assert tp.mask == f"{jane.patient_id}/t{tp.index:02d}_mask.nii"
        assert tp.mask_native == f"{jane.patient_id}/t{tp.index:02d}_mask_native.nii.gz"
        assert tp.registration.ok
        assert tp.lesion_volume_ml
        assert tp.lesion_volume_ml > 1
    assert jane.timepoints[0].registration.method == "identity"
    assert jane.timepoints[1].registration.method == "rigid"


def test_transforms_map_follow_up_lesions_onto_baseline(cached: Path) -> None:
    manifest = read_manifest(cached)
    key = load_or_create_salt(cached)
    jane = manifest.patients[pseudonym("Doe^Jane", key)]
    for tp, motion in zip(jane.timepoints[1:], (MOTION_1, MOTION_2), strict=True):
        matrix = np.asarray(tp.transform_to_baseline)
        for lesion in DEFAULT_LESIONS:
            centre = np.array([*lesion.centre_mm, 1.0])
            assert np.linalg.norm((matrix @ motion @ centre - centre)[:3]) < 1.0


def test_registered_volumes_share_the_baseline_grid(cached: Path) -> None:
    manifest = read_manifest(cached)
    jane = manifest.patients[pseudonym("Doe^Jane", load_or_create_salt(cached))]
    images = [nib.load(cached / tp.image) for tp in jane.timepoints]
    masks = [nib.load(cached / tp.mask) for tp in jane.timepoints]
    for image, mask in zip(images, masks, strict=True):
        assert image.get_data_dtype() == np.int16
        assert mask.get_data_dtype() == np.uint8
        assert np.allclose(image.affine, jane.grid_affine)
        assert image.shape == tuple(jane.grid_shape)
        assert np.allclose(mask.affine, image.affine)
    centroids = []
    for mask in masks:
        data = np.asarray(mask.dataobj)
        # The first lesion (largest): voxels within 15 mm of its baseline centre.
        index = np.argwhere(data > 0)
        world = index @ mask.affine[:3, :3].T + mask.affine[:3, 3]
        near = world[np.linalg.norm(world - DEFAULT_LESIONS[0].centre_mm, axis=1) < 15]
        centroids.append(near.mean(axis=0))
    assert np.linalg.norm(centroids[1] - centroids[0]) < 2.0
    assert np.linalg.norm(centroids[2] - centroids[0]) < 2.0


def test_native_masks_keep_the_source_grid(cached: Path, phantom_cohort: Path) -> None:
    manifest = read_manifest(cached)
    jane = manifest.patients[pseudonym("Doe^Jane", load_or_create_salt(cached))]
    source = nib.load(phantom_cohort.parent / "Doe^Jane" / "scan1" / "mask.nii.gz")
    native = nib.load(cached / jane.timepoints[1].mask_native)
    assert np.allclose(native.affine, source.affine)
    assert np.array_equal(np.asarray(native.dataobj), np.asarray(source.dataobj))
    assert np.allclose(jane.timepoints[1].native_affine, source.affine, atol=1e-5)
    image_bytes = (phantom_cohort.parent / "Doe^Jane" / "scan1" / "image.nii.gz").read_bytes()
    assert jane.timepoints[1].content_hash == "sha256:" + hashlib.sha256(image_bytes).hexdigest()


def test_crops_hold_image_and_mask_per_target_and_timepoint(cached: Path) -> None:
    manifest = read_manifest(cached)
    jane = manifest.patients[pseudonym("Doe^Jane", load_or_create_salt(cached))]
    crops = np.load(cached / jane.crops, mmap_mode="r")
    assert crops.dtype == np.float16
    assert list(crops.shape) == jane.crop_shape == [3, 2, 2, 32, 32, 32]
    assert [t.index for t in jane.targets] == [0, 1]
    assert jane.targets[0].volume_ml > jane.targets[1].volume_ml
    assert np.allclose(jane.targets[0].centroid_mm, DEFAULT_LESIONS[0].centre_mm, atol=1.5)
    image, mask = crops[:, :, 0], crops[:, :, 1]
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert float(image.min()) >= 0.0
    assert float(image.max()) <= 1.0
    centre = 16
    assert (mask[:, :, centre, centre, centre] == 1).all()  # every lesion at every timepoint
    # Lesions grow (x1.3) then shrink (x0.7): the mask channel follows.
    sizes = mask[:, 0].reshape(3, -1).sum(axis=1)
    assert sizes[1] > sizes[0] > sizes[2]


def test_patient_without_all_masks_is_registered_and_cropped_from_its_baseline(
        cached: Path) -> None:
    """Targets come from the baseline mask; a follow-up without a mask has an empty mask
    channel (``predict --tracker`` fills it), and the patient is not "with masks"."""
    manifest = read_manifest(cached)
    record = manifest.patients[pseudonym("NoMask01", load_or_create_salt(cached))]
    assert record.status == "ok"
    assert not record.has_mask
    assert record.timepoints[0].mask is not None
    assert record.timepoints[1].mask is None
    assert record.timepoints[1].registration.ok
    assert (cached / record.timepoints[1].image).is_file()
    assert record.targets
    assert record.crops is not None
    crops = np.load(cached / record.crops)
    assert crops.shape[:3] == (len(record.timepoints), len(record.targets), 2)
    assert crops[0, :, 1].any()
    assert not crops[1:, :, 1].any()
    assert crops[1:, :, 0].any()  # the follow-up's image is cut all the same


def test_no_identifier_or_date_reaches_the_cache(cached: Path) -> None:
    for path in cached.rglob("*"):
        if path.is_file() and path.name != "salt.key":
            data = path.read_bytes()
            if path.suffix == ".gz":
                import gzip

                data = gzip.decompress(data)
            for secret in (b"Doe", b"Jane", b"Roe^", b"NoMask01", b"2020-0", b"scan1"):
                assert secret not in data, (path, secret)


def test_rerun_skips_everything_and_changes_nothing(cached: Path, phantom_cohort: Path) -> None:
    before_manifest, before_files = manifest_content(cached), file_hashes(cached)
    summary = run(phantom_cohort, cached)
    assert summary.processed == 0
    assert summary.skipped == 3
    assert not summary.failed
    assert manifest_content(cached) == before_manifest
    assert file_hashes(cached) == before_files


def test_changed_input_or_config_redoes_what_it_affects(cohort_copy: Path, tmp_path: Path
                                                        ) -> None:
    cache = tmp_path / "cache"
    run(cohort_copy, cache)
    image = cohort_copy.parent / "Roe^Richard" / "scan1" / "image.nii.gz"
    loaded = nib.load(image)
    data = np.asarray(loaded.dataobj).copy()
    data[0, 0, 0] += 5
    nib.save(nib.Nifti1Image(data, loaded.affine, loaded.header), image)
    summary = run(cohort_copy, cache)
    assert (summary.processed, summary.skipped) == (1, 2)
    summary = run(cohort_copy, cache, config=PreprocessConfig(crop_size=16))
    assert (summary.processed, summary.skipped) == (3, 0)
    manifest = read_manifest(cache)
    assert manifest.config["crop_size"] == 16
    jane = manifest.patients[pseudonym("Doe^Jane", load_or_create_salt(cache))]
    assert np.load(cache / jane.crops, mmap_mode="r").shape[-1] == 16


def test_failing_patient_is_reported_and_the_rest_go_on(cohort_copy: Path, tmp_path: Path
                                                        ) -> None:
    (cohort_copy.parent / "Roe^Richard" / "scan1" / "image.nii.gz").write_bytes(b"garbage")
    cache = tmp_path / "cache"
    summary = run(cohort_copy, cache)
    assert summary.processed == 2
    assert len(summary.failed) == 1
    key = load_or_create_salt(cache)
    failure = summary.failed[0]
    assert failure.patient_id == pseudonym("Roe^Richard", key)
    assert "Roe" not in failure.error
    assert "scan1" not in failure.error
    assert "NIfTI" in failure.error or "gzip" in failure.error.lower()
    record = read_manifest(cache).patients[failure.patient_id]
    assert record.status == "failed"
    assert record.error == failure.error
    assert not list((cache / failure.patient_id).glob("t*_*"))  # no partial outputs


def test_fail_fast_stops_at_the_first_failure(cohort_copy: Path, tmp_path: Path) -> None:
    for patient in ("Doe^Jane", "NoMask01"):
        (cohort_copy.parent / patient / "scan1" / "image.nii.gz").write_bytes(b"garbage")
    summary = run(cohort_copy, tmp_path / "cache", fail_fast=True)
    assert len(summary.failed) == 1
    assert summary.stopped_early
    assert summary.processed <= 1  # whatever came before the first failure in id order


def test_shards_split_the_cohort_and_merge_into_one_manifest(
        phantom_cohort: Path, cached: Path, tmp_path: Path) -> None:
    cache = cache_with_salt_of(cached, tmp_path / "cache")  # same pseudonyms as the full run
    first = run(phantom_cohort, cache, shard=(1, 2))
    second = run(phantom_cohort, cache, shard=(2, 2))
    assert (first.selected, second.selected) == (2, 1)
    assert first.processed + second.processed == 3
    from medseq.preprocess.shards import merge_cache

    merge_cache(cache)  # the index of a sharded cache is written by preprocess --merge
    assert manifest_content(cache) == manifest_content(cached)
    assert {k: v for k, v in file_hashes(cache).items() if not k.startswith(".shards")} \
        == file_hashes(cached)


def test_keep_ids_uses_original_ids_and_refuses_mixing(phantom_cohort: Path, cached: Path,
                                                       tmp_path: Path) -> None:
    from medseq.errors import CacheError

    cache = tmp_path / "cache"
    run(phantom_cohort, cache, keep_ids=True, shard=(1, 3))
    manifest = read_manifest(cache)
    assert not manifest.pseudonymised
    assert set(manifest.patients) <= {"Doe^Jane", "Roe^Richard", "NoMask01"}
    with pytest.raises(CacheError, match="keep-ids"):
        run(phantom_cohort, cache, keep_ids=False)
    del cached


def test_mr_patient_is_registered_and_z_scored(tmp_path: Path) -> None:
    from tests.preprocess.phantom import grid_affine, render, rigid, save

    shape, affine = (48, 40, 40), grid_affine((48, 40, 40), (4.0, 4.0, 5.0))
    rows = ["patient_id,timepoint,date,image,mask"]
    motion = rigid((2, 3, -2), (4, -3, 5))
    for index, (date, scan_motion) in enumerate((("2021-01-01", None), ("2021-03-01", motion))):
        hu, mask = render(shape, affine, motion=scan_motion)
        signal = (hu.astype(np.float32) + 1000.0) * 0.5  # MR-like: no negative values
        save(tmp_path / f"mr{index}.nii.gz", signal, affine)
        save(tmp_path / f"mr{index}_mask.nii.gz", mask, affine)
        rows.append(f"MR01,s{index},{date},mr{index}.nii.gz,mr{index}_mask.nii.gz")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    cache = tmp_path / "cache"
    summary = run(tmp_path / "manifest.csv", cache, keep_ids=True)
    assert not summary.failed
    record = read_manifest(cache).patients["MR01"]
    assert record.modality == "MR"
    assert record.timepoints[1].registration.ok
    assert record.timepoints[1].intensity["kind"] == "mr_zscore"
    assert nib.load(cache / record.timepoints[0].image).get_data_dtype() == np.float32
    crops = np.load(cache / record.crops)
    assert float(crops[:, :, 0].min()) < -0.5  # z-scores, not a [0, 1] window
    matrix = np.asarray(record.timepoints[1].transform_to_baseline)
    centre = np.array([*DEFAULT_LESIONS[0].centre_mm, 1.0])
    assert np.linalg.norm((matrix @ motion @ centre - centre)[:3]) < 1.0


@pytest.mark.parametrize(("name", "index"), [("Doe^Jane", 1), ("NoMask01", 1)])
def test_native_images_keep_the_source_voxels_and_grid(cached: Path, phantom_cohort: Path,
                                                       name: str, index: int) -> None:
    manifest = read_manifest(cached)
    patient = manifest.patients[pseudonym(name, load_or_create_salt(cached))]
    tp = patient.timepoints[index]
    rel = f"{patient.patient_id}/t{index:02d}_image_native.nii.gz"
    assert tp.image_native == rel
    stored = (cached / "manifest.json").read_text()
    assert f'"image_native":"{rel}"' in stored.replace(" ", "")
    source_path = phantom_cohort.parent / name / f"scan{index}" / "image.nii.gz"
    source = nib.load(source_path)
    native = nib.load(cached / rel)
    assert native.get_data_dtype() == np.int16
    assert native.shape == source.shape == tuple(tp.native_shape or ())
    assert np.allclose(native.affine, source.affine, atol=1e-6)
    assert np.allclose(tp.native_affine, native.affine, atol=1e-5)
    voxels = np.asarray(native.dataobj)
    assert voxels.dtype == np.int16
    assert np.array_equal(voxels, np.asarray(source.dataobj))
    loaded = load_nifti(source_path)  # what preprocess read: the loader's grid, not the file's
    assert np.array_equal(voxels, loaded.array)
    assert np.allclose(native.affine, loaded.affine, atol=1e-6)
