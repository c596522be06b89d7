"""``medseq scan``: JSON schema, tables, and exit code 2 with one line for unusable input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medseq.cli import app
from tests.dicom_factory import write_series
from tests.io.discovery_files import write_nifti, write_non_image

runner = CliRunner()
SHAPE = (8, 6, 5)


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["scan", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stdout + result.stderr
    return result.exit_code, result.stdout, result.stderr


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_json_document_follows_the_documented_schema(tmp_path: Path) -> None:
    write_series(tmp_path / "a", shape=SHAPE, patient_id="P1", study_date="20240101")
    write_series(tmp_path / "b", shape=SHAPE, patient_id="P1", study_date="20240111",
                 series_description="FOLLOW")
    (tmp_path / "junk.dcm").write_text("nope")
    code, out, _ = run(str(tmp_path), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["schema_version"] == 1
    assert set(doc) == {"schema_version", "medseq_version", "root", "layout", "summary",
                        "patients", "skipped", "warnings"}
    assert doc["layout"] == "dicom"
    assert doc["summary"] == {"patients": 1, "timepoints": 2, "skipped": 1, "warnings": 0}
    patient = doc["patients"][0]
    assert patient["patient_id"] == "P1"
    assert [tp["days"] for tp in patient["timepoints"]] == [0, 10]
    tp = patient["timepoints"][1]
    assert set(tp) == {"name", "date", "days", "study_uid", "image", "mask", "mask_source",
                       "mask_rois"}
    assert (tp["mask"], tp["mask_source"], tp["mask_rois"]) == (None, "none", None)
    assert tp["date"] == "2024-01-11"
    image = tp["image"]
    assert set(image) == {"format", "path", "file_count", "series_uid", "description",
                          "modality", "shape", "spacing", "affine"}
    assert image["description"] == "FOLLOW"
    assert image["modality"] == "CT"
    assert image["shape"] == list(SHAPE)
    assert image["file_count"] == SHAPE[2]
    assert np.asarray(image["affine"]).shape == (4, 4)
    assert doc["skipped"] == [{"path": str(tmp_path / "junk.dcm"), "kind": "file",
                               "patient_id": None, "reason": "not a DICOM file"}]


def test_json_holds_no_patient_names_or_birth_dates(tmp_path: Path) -> None:
    write_series(tmp_path, shape=SHAPE, patient_name="Doe^Jane")
    code, out, _ = run(str(tmp_path), "--json")
    assert code == 0
    assert "Doe" not in out
    assert "1960" not in out  # the factory's PatientBirthDate


def test_table_output_lists_patients_skipped_and_warnings(tmp_path: Path) -> None:
    write_nifti(tmp_path / "P1" / "2020-01-01" / "image.nii.gz")
    write_nifti(tmp_path / "P1" / "2020-01-01" / "mask.nii.gz", dtype=np.uint8)
    write_nifti(tmp_path / "P2" / "2020-01-01" / "image.nii.gz", shape=(4, 4, 3, 2))
    code, out, err = run(str(tmp_path))
    assert code == 0
    assert "layout: nifti" in out
    assert "P1" in out
    assert "mask.nii.gz" in out
    assert "Skipped" in out
    assert "4D" in out
    assert err.strip() == ""


def test_series_option_is_applied(tmp_path: Path) -> None:
    write_series(tmp_path / "a", shape=SHAPE, series_description="AX SOFT", study_uid="1.2.3")
    write_series(tmp_path / "b", shape=(8, 6, 7), series_description="AX LUNG",
                 study_uid="1.2.3")
    code, out, _ = run(str(tmp_path), "--json", "--series", "soft")
    assert code == 0
    assert json.loads(out)["patients"][0]["timepoints"][0]["image"]["description"] == "AX SOFT"
    code, _, err = run(str(tmp_path), "--series", "(")
    assert code == 1
    assert "not a valid regular expression" in one_error_line(err)


def _zero_byte(root: Path) -> None:
    (root / "a.dcm").write_bytes(b"")


def _truncated(root: Path) -> None:
    path = write_series(root / "s", shape=(8, 6, 1))[0]
    path.write_bytes(path.read_bytes()[:200])


def _non_dicom(root: Path) -> None:
    (root / "image.dcm").write_text("definitely not DICOM\n" * 20)


def _only_scouts(root: Path) -> None:
    write_series(root, shape=(8, 6, 2), image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))


def _only_sr_rtstruct_seg(root: Path) -> None:
    for modality in ("SR", "RTSTRUCT", "SEG"):
        write_non_image(root / f"{modality}.dcm", modality=modality, study_uid="1.2.3")


def _dicomdir_missing(root: Path) -> None:
    from pydicom.fileset import FileSet

    fileset = FileSet()
    for path in write_series(root / "src", shape=(8, 6, 2)):
        fileset.add(path)
    fileset.write(root / "media")
    for path in (root / "media").rglob("*"):
        if path.is_file() and path.name != "DICOMDIR":
            path.unlink()
    for path in (root / "src").iterdir():
        path.unlink()
    (root / "src").rmdir()


def _four_d(root: Path) -> None:
    write_nifti(root / "P1" / "2020-01-01" / "image.nii.gz", shape=(4, 4, 3, 2))


def _nan(root: Path) -> None:
    data = np.zeros((4, 4, 3), dtype=np.float32)
    data[1, 1, 1] = np.nan
    write_nifti(root / "P1" / "2020-01-01" / "image.nii.gz", data=data)


def _mask_mismatch(root: Path) -> None:
    write_nifti(root / "P1" / "2020-01-01" / "image.nii.gz")
    write_nifti(root / "P1" / "2020-01-01" / "mask.nii.gz", shape=(6, 5, 3), dtype=np.uint8)


def _symlink_loop(root: Path) -> None:
    (root / "loop").symlink_to(root / "loop")
    (root / "up").symlink_to(root)


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "zero-byte": (_zero_byte, "empty (0 bytes)"),
    "truncated": (_truncated, "truncated"),
    "non-dicom .dcm": (_non_dicom, "image.dcm: not a DICOM file"),
    "only scouts": (_only_scouts, "only localizer/scout images"),
    "only SR/RTSTRUCT/SEG": (_only_sr_rtstruct_seg, "only non-image objects"),
    "DICOMDIR to missing files": (_dicomdir_missing, "referenced by DICOMDIR"),
    "4D NIfTI": (_four_d, "image is 4D"),
    "NaN NIfTI": (_nan, "NaN or infinite"),
    "mask geometry": (_mask_mismatch, "mask shape (6, 5, 3) differs"),
    "symlink loop": (_symlink_loop, "loop: symbolic link loop"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unusable_input_exits_2_with_one_line(tmp_path: Path, case: str) -> None:
    make, reason = CASES[case]
    root = tmp_path / "input"
    root.mkdir()
    make(root)
    code, _, err = run(str(root))
    assert code == 2, err
    line = one_error_line(err)
    assert str(root) in line
    assert reason in line, line
    # --json still documents every skipped item before the error line.
    code, out, err = run(str(root), "--json")
    assert code == 2
    one_error_line(err)
    if out.strip():
        doc = json.loads(out)
        assert doc["patients"] == []
        assert any(reason in s["reason"] for s in doc["skipped"]) or reason in err


def test_zero_byte_and_truncated_only_folders_name_the_reason(tmp_path: Path) -> None:
    _zero_byte(tmp_path)
    _truncated(tmp_path)
    code, out, err = run(str(tmp_path), "--json")
    assert code == 2
    assert out == ""
    line = one_error_line(err)
    assert "2 file(s) looked at, none a readable DICOM file" in line
    assert "a.dcm: empty (0 bytes)" in line
    assert "IM00001.dcm: truncated" in line


def test_empty_folder_and_missing_path_exit_2(tmp_path: Path) -> None:
    code, out, err = run(str(tmp_path))
    assert code == 2
    assert out == ""
    assert "folder is empty" in one_error_line(err)
    code, _, err = run(str(tmp_path / "nope"))
    assert code == 2
    assert "no such file or folder" in one_error_line(err)


def test_unreadable_folder_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    locked = tmp_path / "locked"
    write_series(locked, shape=SHAPE)
    real = os.scandir

    def scandir(path: str | os.PathLike[str]) -> object:
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, _, err = run(str(tmp_path))
    assert code == 2
    assert "no recognisable input" in one_error_line(err)
    code, _, err = run(str(locked))
    assert code == 2
    assert "cannot list folder (Permission denied)" in one_error_line(err)


def test_non_ascii_path_scans(tmp_path: Path) -> None:
    root = tmp_path / "Bürger 患者"
    write_series(root / "série", shape=SHAPE, naming="random")
    code, out, _ = run(str(root), "--json")
    assert code == 0
    assert json.loads(out)["root"] == str(root)
