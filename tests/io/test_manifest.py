"""Discovery from a manifest CSV: NIfTI files and DICOM folders, relative paths, labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseq.errors import LayoutError
from medseq.io.cohort import Cohort, ImageFormat, Layout, SkipKind
from medseq.io.discover import discover
from medseq.io.load import load_image, load_mask
from tests.dicom_factory import lps_affine_ras, write_series
from tests.io.discovery_files import write_nifti

HEADER = "patient_id,timepoint,date,image,mask,label\n"


def scan(path: Path) -> Cohort:
    return discover(path, require_patients=False)


def patient_reason(cohort: Cohort, patient_id: str) -> str:
    found = [s for s in cohort.skipped if s.kind is SkipKind.PATIENT and s.patient_id == patient_id]
    assert len(found) == 1, cohort.skipped
    return found[0].reason


def test_nifti_and_dicom_rows_relative_to_the_csv(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_nifti(data / "p1_base.nii.gz")
    write_nifti(data / "p1_base_mask.nii.gz", dtype=np.uint8)
    write_series(data / "p1_fu", shape=(8, 6, 5), naming="random", study_date="20230301")
    # A DICOM mask grid: the RAS+ affine of the series the factory writes.
    affine = lps_affine_ras(spacing=(0.8, 0.8, 2.5), orientation=(1, 0, 0, 0, 1, 0),
                            origin=(-50.0, -40.0, 100.0))
    write_nifti(data / "p1_fu_mask.nii", shape=(8, 6, 5), affine=affine, dtype=np.uint8)
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(HEADER
                        + "P1,fu,,data/p1_fu,data/p1_fu_mask.nii,1\n"
                        + "P1,base,2023-01-01,data/p1_base.nii.gz,data/p1_base_mask.nii.gz,1\n")
    cohort = scan(manifest)
    assert cohort.layout is Layout.MANIFEST
    patient = cohort.patient("P1")
    assert patient.label == 1
    base, fu = patient.timepoints
    assert (base.name, base.days, base.image.format) == ("base", 0, ImageFormat.NIFTI)
    assert (fu.name, fu.days, fu.image.format) == ("fu", 59, ImageFormat.DICOM)  # StudyDate
    assert fu.study_uid
    assert fu.mask is not None
    assert load_mask(fu.mask, like=load_image(fu.image)).shape == (8, 6, 5)


def test_missing_columns_is_a_layout_error(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("patient,image\nP1,a.nii.gz\n")
    with pytest.raises(LayoutError, match="missing patient_id,timepoint,date,mask"):
        discover(manifest)


def test_missing_image_and_bad_rows_skip_their_patient(tmp_path: Path) -> None:
    write_nifti(tmp_path / "ok.nii.gz")
    (tmp_path / "notes.txt").write_text("x")
    manifest = tmp_path / "m.csv"
    manifest.write_text(HEADER
                        + "P1,t0,2020-01-01,absent.nii.gz,,\n"
                        + "P2,t0,2020-01-01,ok.nii.gz,,\n"
                        + "P3,t0,01/02/2020,ok.nii.gz,,\n"
                        + "P4,t0,2020-01-01,ok.nii.gz,,1\n"
                        + "P4,t1,2020-02-01,ok.nii.gz,,0\n"
                        + "P5,t0,2020-01-01,notes.txt,,\n"
                        + ",t0,2020-01-01,ok.nii.gz,,\n")
    cohort = scan(manifest)
    assert [p.patient_id for p in cohort.patients] == ["P2"]
    assert "absent.nii.gz not found" in patient_reason(cohort, "P1")
    assert "not YYYY-MM-DD" in patient_reason(cohort, "P3")
    assert "conflicting labels" in patient_reason(cohort, "P4")
    assert "neither a NIfTI file" in patient_reason(cohort, "P5")
    rows = [s for s in cohort.skipped if s.kind is SkipKind.ROW]
    assert rows[0].reason == "row has no patient_id"
    assert rows[0].path.endswith("m.csv:8")


def test_dicom_folder_of_only_sr_skips_the_patient(tmp_path: Path) -> None:
    from tests.io.discovery_files import write_non_image

    write_non_image(tmp_path / "sr" / "report.dcm", modality="SR")
    manifest = tmp_path / "m.csv"
    manifest.write_text(HEADER + "P1,t0,2020-01-01,sr,,\n")
    assert "only non-image objects" in patient_reason(scan(manifest), "P1")


def test_mask_mismatch_in_manifest_skips_the_patient(tmp_path: Path) -> None:
    write_nifti(tmp_path / "img.nii.gz")
    write_nifti(tmp_path / "mask.nii.gz", shape=(6, 5, 3), dtype=np.uint8)
    manifest = tmp_path / "m.csv"
    manifest.write_text(HEADER + "P1,t0,2020-01-01,img.nii.gz,mask.nii.gz,\n")
    assert "mask shape (6, 5, 3) differs" in patient_reason(scan(manifest), "P1")
