"""Inputs that should work (small scans, a sample-data folder), or fail naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from medseq.cli import app
from tests.dicom_factory import default_pixels, write_series

runner = CliRunner()
DATES = ("tp_2024-01-15", "tp_2024-04-15")


def nifti_layout(root: Path, data: np.ndarray, affine: np.ndarray | None, *,
                 codes: int = 1, pixdim: tuple[float, float, float] | None = None) -> Path:
    """``root/PAT1/<date>/image.nii.gz``: the same image on two dates."""
    for date in DATES:
        path = root / "PAT1" / date / "image.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        image = nib.Nifti1Image(data, affine)
        if codes:
            image.set_qform(affine, code=codes)
            image.set_sform(affine, code=codes)
        else:  # through the header: the image's own setters would write an sform on save
            image.header.set_qform(None, code=0)
            image.header.set_sform(None, code=0)
        if pixdim is not None:
            image.header["pixdim"][1:4] = pixdim
        nib.save(image, path)
    return root


def preprocess(source: Path, cache: Path) -> tuple[int, str, dict]:
    result = runner.invoke(app, ["preprocess", str(source), "-o", str(cache)])
    manifest = cache / "manifest.json"
    return (result.exit_code, result.stderr,
            json.loads(manifest.read_text()) if manifest.is_file() else {})


@pytest.mark.parametrize("spacing", [(0.8, 0.8, 2.5), (1.0, 1.0, 1.0), (2.0, 2.0, 3.0)])
def test_the_same_small_dicom_series_on_two_dates_keeps_its_alignment(
        tmp_path: Path, spacing: tuple[float, float, float]) -> None:
    """32x32x12 scans: too small for the default pyramid (ITK errors) and a noisy metric that
    once drove the optimiser away from a perfect start ("metric worse than at the start")."""
    for n, date in enumerate(("20240115", "20240415")):
        write_series(tmp_path / "in" / f"s{n}", shape=(32, 32, 12), spacing=spacing,
                     study_date=date, seed=0)
    code, stderr, manifest = preprocess(tmp_path / "in", tmp_path / "cache")
    assert code == 0, stderr
    (patient,) = manifest["patients"].values()
    follow_up = patient["timepoints"][1]
    assert follow_up["registration"]["ok"], follow_up["registration"]
    matrix = np.asarray(follow_up["transform_to_baseline"])
    assert np.abs(matrix[:3, 3]).max() < min(spacing) / 2  # under half a voxel from identity
    assert np.allclose(matrix[:3, :3], np.eye(3), atol=0.01)


def test_near_identical_small_nifti_scans_keep_the_start(tmp_path: Path) -> None:
    """The same structure with other noise: the start is the best alignment, and is kept."""
    affine = np.diag([1.5, 1.5, 2.5, 1.0])
    base = nifti_layout(tmp_path / "in", (default_pixels((32, 32, 12), seed=0) - 1024), affine)
    other = default_pixels((32, 32, 12), seed=1) - 1024
    follow_up = base / "PAT1" / DATES[1] / "image.nii.gz"
    image = nib.Nifti1Image(other, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, follow_up)
    code, stderr, manifest = preprocess(base, tmp_path / "cache")
    assert code == 0, stderr
    (patient,) = manifest["patients"].values()
    registration = patient["timepoints"][1]["registration"]
    assert registration["ok"]
    assert registration["final_metric"] <= registration["initial_metric"] * 0.99 or (
        "kept the starting alignment" in registration["message"])


def test_single_slice_image_is_refused_naming_the_file(tmp_path: Path) -> None:
    data = (default_pixels((32, 32, 1), seed=0) - 1024).astype(np.int16)
    source = nifti_layout(tmp_path / "in", data, np.diag([1.0, 1.0, 1.0, 1.0]))
    code, stderr, manifest = preprocess(source, tmp_path / "cache")
    assert code == 2
    (patient,) = manifest["patients"].values()
    error = patient["error"]
    assert error.startswith(f"<input>/{patient['patient_id']}/t00/image.nii.gz: ")
    assert "32x32x1 voxels: not a 3D scan" in error
    assert "internal error" not in stderr
    assert f"failed {patient['patient_id']}: {error}" in stderr


@pytest.mark.parametrize(("pixdim", "unknown"), [
    ((0.0, 0.0, 0.0), "orientation and voxel size are unknown"),
    ((2.0, 2.0, 3.0), "orientation is unknown"),
])
def test_nifti_without_geometry_is_refused_naming_the_file(
        tmp_path: Path, pixdim: tuple[float, float, float], unknown: str) -> None:
    data = (default_pixels((32, 32, 12), seed=0) - 1024).astype(np.int16)
    source = nifti_layout(tmp_path / "in", data, None, codes=0, pixdim=pixdim)
    code, stderr, _ = preprocess(source, tmp_path / "cache")
    assert code == 2
    assert stderr.count("\n") == 1, stderr  # one line, no nibabel log line about pixdim
    assert "PAT1/tp_2024-01-15/image.nii.gz: no valid geometry" in stderr
    assert unknown in stderr
    assert not (tmp_path / "cache").exists()


def test_four_d_nifti_names_the_file(tmp_path: Path) -> None:
    data = np.zeros((16, 16, 8, 3), np.int16)
    source = nifti_layout(tmp_path / "in", data, np.diag([2.0, 2.0, 3.0, 1.0]))
    code, stderr, _ = preprocess(source, tmp_path / "cache")
    assert code == 2
    assert stderr.startswith("error: ")
    assert "PAT1/tp_2024-01-15/image.nii.gz: image is 4D" in stderr


def test_a_folder_with_manifest_csv_is_a_manifest_input(tmp_path: Path) -> None:
    """What `medseq sample-data OUT` writes (nifti/... and manifest.csv) preprocesses as is."""
    from medseq.io.cohort import Layout
    from medseq.io.discover import discover

    result = runner.invoke(app, ["sample-data", str(tmp_path / "sd"), "-n", "1", "-t", "2",
                                 "--format", "nifti", "--lesions", "1"])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "sd" / "manifest.csv").is_file()
    cohort = discover(tmp_path / "sd")
    assert cohort.layout is Layout.MANIFEST
    assert cohort.root == tmp_path / "sd" / "manifest.csv"
    assert [len(p.timepoints) for p in cohort.patients] == [2]
    assert all(tp.days is not None for tp in cohort.patients[0].timepoints)
