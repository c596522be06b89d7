"""Discovery of the NIfTI layout: patient/<timepoint>/image.nii.gz with masks and dates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseq.errors import InputDataError, LayoutError
from medseq.io.cohort import Cohort, ImageFormat, Layout, SkipKind
from medseq.io.discover import discover
from medseq.io.load import load_image, load_mask
from tests.io.discovery_files import write_nifti


def scan(path: Path) -> Cohort:
    return discover(path, require_patients=False)


def patient_reason(cohort: Cohort, patient_id: str) -> str:
    found = [s for s in cohort.skipped if s.kind is SkipKind.PATIENT and s.patient_id == patient_id]
    assert len(found) == 1, cohort.skipped
    assert "\n" not in found[0].reason
    return found[0].reason


def test_dates_from_folder_names_order_timepoints(tmp_path: Path) -> None:
    for name in ("followup_20230415", "2023-01-15_baseline", "fu2-2023-07-20"):
        write_nifti(tmp_path / "P1" / name / "image.nii.gz")
    write_nifti(tmp_path / "P1" / "2023-01-15_baseline" / "mask.nii.gz", dtype=np.uint8)
    cohort = scan(tmp_path)
    assert cohort.layout is Layout.NIFTI
    patient = cohort.patient("P1")
    assert [tp.name for tp in patient.timepoints] == [
        "2023-01-15_baseline", "followup_20230415", "fu2-2023-07-20"]
    assert [tp.days for tp in patient.timepoints] == [0, 90, 186]
    first = patient.timepoints[0]
    assert first.mask is not None
    assert first.mask.name == "mask.nii.gz"
    assert patient.timepoints[1].mask is None
    assert first.image.format is ImageFormat.NIFTI
    assert first.image.shape == (6, 5, 4)
    volume = load_image(first.image)
    assert load_mask(first.mask, like=volume).shape == volume.shape


def test_dates_from_timepoints_csv_and_plain_nii(tmp_path: Path) -> None:
    write_nifti(tmp_path / "P1" / "a" / "image.nii")
    write_nifti(tmp_path / "P1" / "b" / "image.nii")
    (tmp_path / "P1" / "timepoints.csv").write_text("timepoint,date\nb,2022-03-01\na,20220101\n")
    patient = scan(tmp_path).patient("P1")
    assert [(tp.name, tp.days) for tp in patient.timepoints] == [("a", 0), ("b", 59)]


def test_labels_csv_gives_patient_labels(tmp_path: Path) -> None:
    write_nifti(tmp_path / "P1" / "2020-01-01" / "image.nii.gz")
    write_nifti(tmp_path / "P2" / "2020-01-01" / "image.nii.gz")
    (tmp_path / "labels.csv").write_text("patient_id,label\nP1,1\nP2,0\nP9,1\n")
    cohort = scan(tmp_path)
    assert [p.label for p in cohort.patients] == [1, 0]
    assert any("P9 has a label but no folder" in w for w in cohort.warnings)


def test_undated_timepoints_are_ordered_by_name_with_a_warning(tmp_path: Path) -> None:
    for name in ("tp10", "tp2", "tp1"):
        write_nifti(tmp_path / "P1" / name / "image.nii.gz")
    cohort = scan(tmp_path)
    patient = cohort.patient("P1")
    assert [tp.name for tp in patient.timepoints] == ["tp1", "tp2", "tp10"]
    assert all(tp.days is None for tp in patient.timepoints)
    assert any("no dates" in w for w in cohort.warnings)


def test_single_patient_folder(tmp_path: Path) -> None:
    write_nifti(tmp_path / "P7" / "2021-05-05" / "image.nii.gz")
    cohort = scan(tmp_path / "P7")
    assert [p.patient_id for p in cohort.patients] == ["P7"]


def test_four_d_image_skips_the_patient(tmp_path: Path) -> None:
    write_nifti(tmp_path / "P1" / "2020-01-01" / "image.nii.gz", shape=(4, 4, 3, 2))
    write_nifti(tmp_path / "P2" / "2020-01-01" / "image.nii.gz")
    cohort = scan(tmp_path)
    assert [p.patient_id for p in cohort.patients] == ["P2"]
    assert "image is 4D with shape (4, 4, 3, 2)" in patient_reason(cohort, "P1")


def test_nan_image_skips_the_patient(tmp_path: Path) -> None:
    data = np.ones((4, 4, 3), dtype=np.float32)
    data[0, 0, 0] = np.nan
    write_nifti(tmp_path / "P1" / "2020-01-01" / "image.nii.gz", data=data)
    cohort = scan(tmp_path)
    assert "1 voxel(s) are NaN or infinite" in patient_reason(cohort, "P1")
    with pytest.raises(InputDataError, match="NaN"):
        discover(tmp_path)


def test_mask_geometry_mismatch_skips_the_patient(tmp_path: Path) -> None:
    write_nifti(tmp_path / "P1" / "2020-01-01" / "image.nii.gz")
    shifted = np.diag([0.8, 0.8, 2.5, 1.0])
    shifted[:3, 3] = (-20.0, 13.0, 30.0)
    write_nifti(tmp_path / "P1" / "2020-01-01" / "mask.nii.gz", affine=shifted, dtype=np.uint8)
    reason = patient_reason(scan(tmp_path), "P1")
    assert "mask geometry differs from its image's" in reason
    assert "3 mm apart" in reason


def test_partly_dated_patient_is_skipped(tmp_path: Path) -> None:
    write_nifti(tmp_path / "P1" / "2020-01-01" / "image.nii.gz")
    write_nifti(tmp_path / "P1" / "later" / "image.nii.gz")
    assert "no date for timepoint(s) later" in patient_reason(scan(tmp_path), "P1")


def test_bad_timepoints_csv_skips_the_patient(tmp_path: Path) -> None:
    write_nifti(tmp_path / "P1" / "a" / "image.nii.gz")
    (tmp_path / "P1" / "timepoints.csv").write_text("timepoint,date\na,15/01/2023\n")
    assert "not YYYY-MM-DD or YYYYMMDD" in patient_reason(scan(tmp_path), "P1")


def test_single_nifti_file_is_not_a_layout(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "image.nii.gz")
    with pytest.raises(LayoutError, match="single NIfTI file is not a layout"):
        discover(path)


def test_folders_without_images_are_reported(tmp_path: Path) -> None:
    write_nifti(tmp_path / "P1" / "2020-01-01" / "image.nii.gz")
    (tmp_path / "P1" / "notes").mkdir()
    (tmp_path / "P2" / "2020-01-01").mkdir(parents=True)
    cohort = scan(tmp_path)
    assert len(cohort.patient("P1").timepoints) == 1
    reasons = {Path(s.path).name: (s.kind, s.reason) for s in cohort.skipped}
    assert reasons["notes"] == (SkipKind.FOLDER,
                                "folder holds no image.nii.gz or image.nii: not a timepoint")
    assert reasons["P2"][0] is SkipKind.FOLDER
    assert "not a patient of the NIfTI layout" in reasons["P2"][1]
