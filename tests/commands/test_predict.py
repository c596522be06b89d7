"""`medseq predict`: bad input exits 2 with one line and writes nothing; run resolution.

Predicting a real patient end to end (and matching evaluate's probability) is checked in
tests/test_pipeline.py, which trains a model once.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from medseq.cli import app
from tests.dicom_factory import write_series
from tests.io.discovery_files import write_nifti, write_non_image

runner = CliRunner()


def fake_run(run_dir: Path) -> Path:
    """A run directory with a valid model.json (weights are only read after preprocessing)."""
    run_dir.mkdir(parents=True)
    card = {"format": 1, "medseq_version": "0.1.0", "architecture": {},
            "label_names": ["non-responder", "responder"], "preprocess_config": {}}
    (run_dir / "model.json").write_text(json.dumps(card))
    (run_dir / "splits.json").write_text(json.dumps({"folds": {}, "config_hash": "sha256:x"}))
    (run_dir / "salt.key").write_text("cd" * 32 + "\n")
    return run_dir


def _image(shape: tuple[int, int, int] = (24, 24, 12)) -> np.ndarray:
    grid = np.indices(shape).astype(np.float32)
    return (np.sin(grid[0] / 3) * 200 + np.cos(grid[1] / 4) * 150 + grid[2] * 10 - 300).astype(
        np.int16)


def nifti_patient(root: Path, *, masks: bool = True, four_d: bool = False, nan: bool = False,
                  bad_mask: bool = False, dates: tuple[str, ...] = ("2024-01-10", "2024-03-10"),
                  ) -> Path:
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    for n, name in enumerate(dates):
        folder = root / "PAT1" / name
        data = _image()
        if four_d and n == 1:
            write_nifti(folder / "image.nii.gz", shape=(24, 24, 12, 2), affine=affine)
        elif nan and n == 1:
            arr = data.astype(np.float32)
            arr[0, 0, 0] = np.nan
            write_nifti(folder / "image.nii.gz", affine=affine, data=arr)
        else:
            write_nifti(folder / "image.nii.gz", affine=affine, data=data)
        if masks:
            mask = np.zeros((24, 24, 12) if not (bad_mask and n == 0) else (20, 24, 12), np.uint8)
            mask[8:14, 8:14, 4:8] = 1
            write_nifti(folder / "mask.nii.gz", affine=affine, data=mask)
    return root / "PAT1"


def _snapshot(path: Path) -> dict[str, tuple[int, float]]:
    if path.is_file():
        return {str(path): (path.stat().st_size, path.stat().st_mtime)}
    return {str(p): (p.stat().st_size, p.stat().st_mtime) for p in path.rglob("*")}


CASES: dict[str, Callable[[Path], Path]] = {
    "missing path": lambda t: t / "does-not-exist",
    "empty folder": lambda t: _mkdir(t / "empty"),
    "single NIfTI file": lambda t: write_nifti(t / "x" / "image.nii.gz"),
    "only non-DICOM files": lambda t: _write(t / "junk" / "a.dcm", b"not dicom at all" * 20),
    "zero-byte DICOM": lambda t: _write(t / "zero" / "a.dcm", b""),
    "only an SR object": lambda t: write_non_image(t / "sr" / "sr.dcm", modality="SR").parent,
    "manifest missing a column": lambda t: _write(t / "m.csv", b"patient_id,timepoint,image\n"
                                                   b"A,t0,x.nii.gz\n"),
    "manifest image not found": lambda t: _write(
        t / "m2.csv", b"patient_id,timepoint,date,image,mask\nA,t0,2024-01-01,nope.nii.gz,\n"),
    "4D image": lambda t: nifti_patient(t / "n4", four_d=True),
    "NaN voxels": lambda t: nifti_patient(t / "nn", nan=True),
    "mask off the image grid": lambda t: nifti_patient(t / "nm", bad_mask=True),
    "dated and undated timepoints": lambda t: nifti_patient(t / "nd", dates=("2024-01-10",
                                                                            "followup")),
    "DICOM series with a missing slice only": lambda t: _series(
        t / "gap", offsets=[0.0, 2.5, 5.0, 12.5, 15.0, 17.5]),
    "two patients without --all": lambda t: _two_patients(t / "two"),
    "no lesion mask": lambda t: nifti_patient(t / "nomask", masks=False),
    "a follow-up without a mask (no --tracker)": lambda t: _baseline_mask_only(t / "partial"),
    "image.nii.gz and image.nii in one folder": lambda t: _both_images(t / "both"),
    "truncated DICOM": lambda t: _truncated(t / "trunc"),
}


def _baseline_mask_only(root: Path) -> Path:
    patient = nifti_patient(root)
    (sorted(patient.iterdir())[1] / "mask.nii.gz").unlink()
    return patient


def _both_images(root: Path) -> Path:
    patient = nifti_patient(root)
    first = sorted(patient.iterdir())[0]
    write_nifti(first / "image.nii", affine=np.diag([2.0, 2.0, 3.0, 1.0]), data=_image())
    return patient


def _truncated(folder: Path) -> Path:
    files = write_series(folder / "s1")
    for path in files:
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return folder


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.parent if path.suffix == ".dcm" else path


def _series(folder: Path, **kwargs: object) -> Path:
    write_series(folder / "s1", **kwargs)  # type: ignore[arg-type]
    return folder


def _two_patients(root: Path) -> Path:
    write_series(root / "a", patient_id="A", study_date="20240101")
    write_series(root / "b", patient_id="B", study_date="20240101")
    return root


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = fake_run(tmp_path / "run")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    study = CASES[case](inputs)
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    before = _snapshot(inputs)
    result = runner.invoke(app, ["predict", str(study), "--model", str(run), "--json"])
    assert result.exit_code == 2, (case, result.stdout, result.stderr)
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""
    assert _snapshot(inputs) == before
    assert list(work.iterdir()) == []
    assert list(temp_root.iterdir()) == []
    assert sorted(p.name for p in run.iterdir()) == ["model.json", "salt.key", "splits.json"]


def test_without_a_model_says_how_to_train_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    monkeypatch.chdir(tmp_path)
    study = nifti_patient(tmp_path / "in")
    result = runner.invoke(app, ["predict", str(study)])
    assert result.exit_code == 1
    assert "medseq train" in result.stderr


def test_newest_run_under_runs_is_the_default(tmp_path: Path) -> None:
    from medseq.predict import resolve_run

    old = fake_run(tmp_path / "runs" / "old")
    new = fake_run(tmp_path / "runs" / "new")
    os.utime(old / "model.json", (1, 1))
    assert resolve_run(None, cwd=tmp_path) == tmp_path / "runs" / "new"
    assert resolve_run(old) == old
    assert new.exists()


def test_shard_needs_all(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run")
    result = runner.invoke(app, ["predict", str(tmp_path), "--model", str(run), "--shard", "1/2"])
    assert result.exit_code == 1
    assert "--all" in result.stderr


def test_nifti_helper_writes_readable_images(tmp_path: Path) -> None:
    patient = nifti_patient(tmp_path)
    assert nib.load(next(patient.glob("*/image.nii.gz"))).shape == (24, 24, 12)


def test_summary_shows_class_probability_recist_and_tracks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from medseq.commands.predict import print_summary

    lesion = {"track_id": "L1", "days": 0, "volume_ml": 4.0}
    doc = {
        "patient_id": "Pabc", "modality": "CT",
        "timepoints": [{"days": 0}, {"days": 60}],
        "prediction": {"class": "responder", "probability": 0.81, "threshold": 0.5,
                       "forecast_next_ml": 1.5},
        "recist": [
            {"timepoint": 0, "days": 0, "lesions": 1, "sod_mm": 20.0,
             "change_from_baseline_pct": None, "change_from_nadir_pct": None,
             "new_lesions": False, "response": None, "total_volume_ml": 4.0},
            {"timepoint": 1, "days": 60, "lesions": 1, "sod_mm": 12.0,
             "change_from_baseline_pct": -40.0, "change_from_nadir_pct": -40.0,
             "new_lesions": False, "response": "PR", "total_volume_ml": 1.0},
        ],
        "best_overall_response": "PR", "targets": ["L1"],
        "lesions": [lesion, {**lesion, "days": 60, "volume_ml": 1.0}],
        "model": {"used": "all-patient model", "run": "r1", "medseq_version": "0.1.0",
                  "config_hash": "sha256:abc"},
    }
    print_summary(doc)
    out = capsys.readouterr().out
    assert "Patient Pabc" in out
    assert "responder (probability 0.810" in out
    assert "-40.0%" in out
    assert "L1 (target)" in out
    assert "1.50 mL" in out
