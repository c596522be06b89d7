"""Discovery of DICOM trees: grouping, series choice, and every file or folder it must skip."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from medseq.errors import ExitCode, InputDataError, LayoutError, UsageError
from medseq.io.cohort import Cohort, ImageFormat, Layout, SkipKind
from medseq.io.discover import discover
from medseq.io.load import load_image
from tests.dicom_factory import lps_affine_ras, write_series
from tests.io.discovery_files import write_non_image

SHAPE = (8, 6, 5)


def scan(path: Path, **kwargs: object) -> Cohort:
    return discover(path, require_patients=False, **kwargs)  # type: ignore[arg-type]


def reasons(cohort: Cohort) -> dict[str, str]:
    """Skipped path name -> reason (each reason must be one line)."""
    for item in cohort.skipped:
        assert "\n" not in item.reason
    return {Path(item.path).name: item.reason for item in cohort.skipped}


def test_groups_patients_studies_and_orders_timepoints_by_date(tmp_path: Path) -> None:
    # Files of two patients mixed in one folder, written out of date order.
    write_series(tmp_path / "mixed", shape=SHAPE, patient_id="B", study_date="20240301",
                 naming="random", seed=1)
    write_series(tmp_path / "mixed", shape=SHAPE, patient_id="A", study_date="20240401",
                 naming="random", seed=2)
    write_series(tmp_path / "mixed", shape=SHAPE, patient_id="A", study_date="20240101",
                 naming="random", seed=3)
    cohort = scan(tmp_path)
    assert cohort.layout is Layout.DICOM
    assert [p.patient_id for p in cohort.patients] == ["A", "B"]
    a = cohort.patient("A")
    assert [str(tp.date) for tp in a.timepoints] == ["2024-01-01", "2024-04-01"]
    assert [tp.days for tp in a.timepoints] == [0, 91]
    assert [tp.name for tp in a.timepoints] == ["2024-01-01", "2024-04-01"]
    assert all(tp.study_uid for tp in a.timepoints)
    assert cohort.skipped == ()


def test_series_info_from_headers_matches_the_loaded_volume(tmp_path: Path) -> None:
    orientation = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # sagittal
    write_series(tmp_path, shape=SHAPE, spacing=(0.7, 0.9, 3.0), orientation=orientation,
                 origin=(10.0, -20.0, 30.0), naming="none", shuffle=True, preamble=False)
    image = scan(tmp_path).patients[0].timepoints[0].image
    assert image.format is ImageFormat.DICOM
    assert image.modality == "CT"
    assert image.shape == SHAPE
    assert image.spacing == pytest.approx((0.7, 0.9, 3.0))
    expected = lps_affine_ras(spacing=(0.7, 0.9, 3.0), orientation=orientation,
                              origin=(10.0, -20.0, 30.0))
    np.testing.assert_allclose(np.asarray(image.affine), expected, atol=1e-6)
    assert image.file_count == SHAPE[2]
    volume = load_image(image)
    np.testing.assert_allclose(volume.affine, expected, atol=1e-6)


def test_shuffled_random_names_without_preamble_anywhere_in_the_tree(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "flat", shape=SHAPE, naming="none", shuffle=True,
                         preamble=False)
    # Scatter the files over nested folders with names unrelated to slice order.
    for n, path in enumerate(paths):
        target = tmp_path / "deep" / f"d{n % 3}" / "x" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
    cohort = scan(tmp_path)
    image = cohort.patients[0].timepoints[0].image
    assert image.shape == SHAPE
    positions = [Path(p).name for p in image.files]
    assert positions == [p.name for p in paths]  # files listed in slice order


def test_chooses_the_series_with_most_slices_and_reports_the_others(tmp_path: Path) -> None:
    study = generate_uid()
    write_series(tmp_path / "thick", shape=(8, 6, 3), spacing=(0.8, 0.8, 5.0), study_uid=study,
                 series_description="AX 5mm", series_number=2)
    write_series(tmp_path / "thin", shape=(8, 6, 9), spacing=(0.8, 0.8, 1.0), study_uid=study,
                 series_description="AX 1mm", series_number=3)
    cohort = scan(tmp_path)
    chosen = cohort.patients[0].timepoints[0].image
    assert chosen.description == "AX 1mm"
    why = reasons(cohort)["thick"]
    assert "not chosen (3 slices)" in why
    assert "AX 1mm, 9 slices" in why


def test_series_regex_overrides_the_choice(tmp_path: Path) -> None:
    study = generate_uid()
    write_series(tmp_path / "thick", shape=(8, 6, 3), study_uid=study, series_description="AX 5mm")
    write_series(tmp_path / "thin", shape=(8, 6, 9), study_uid=study, series_description="AX 1mm")
    cohort = scan(tmp_path, series=r"5\s*mm")
    assert cohort.patients[0].timepoints[0].image.description == "AX 5mm"
    assert "does not match --series" in reasons(cohort)["thin"]


def test_bad_series_regex_is_a_usage_error(tmp_path: Path) -> None:
    write_series(tmp_path, shape=SHAPE)
    with pytest.raises(UsageError, match="not a valid regular expression"):
        discover(tmp_path, series="(unclosed")


def test_broken_series_is_reported_and_a_good_one_chosen(tmp_path: Path) -> None:
    study = generate_uid()
    write_series(tmp_path / "gappy", shape=(8, 6, 6), study_uid=study,
                 offsets=[0, 2.5, 5, 10, 12.5, 15], series_description="GAPPY")
    write_series(tmp_path / "good", shape=(8, 6, 4), study_uid=study, series_description="GOOD")
    cohort = scan(tmp_path)
    assert cohort.patients[0].timepoints[0].image.description == "GOOD"
    assert "missing slice" in reasons(cohort)["gappy"]


def test_patient_whose_only_series_is_broken_is_skipped(tmp_path: Path) -> None:
    write_series(tmp_path / "p1", shape=(8, 6, 6), patient_id="P1",
                 offsets=[0, 2.5, 5, 10, 12.5, 15])
    write_series(tmp_path / "p2", shape=SHAPE, patient_id="P2")
    cohort = scan(tmp_path)
    assert [p.patient_id for p in cohort.patients] == ["P2"]
    patient = [s for s in cohort.skipped if s.kind is SkipKind.PATIENT]
    assert len(patient) == 1
    assert patient[0].patient_id == "P1"
    assert "missing slice" in patient[0].reason


def test_zero_byte_truncated_and_non_dicom_files_are_skipped(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "series", shape=SHAPE)
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "notes.dcm").write_text("not a DICOM file at all, just text\n" * 10)
    data = paths[0].read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 40])
    cohort = scan(tmp_path)
    why = reasons(cohort)
    assert why["empty.dcm"] == "empty (0 bytes)"
    assert why["notes.dcm"].startswith("not a DICOM file")
    assert why["cut.dcm"].startswith("truncated")
    assert cohort.patients[0].timepoints[0].image.file_count == SHAPE[2]


def test_only_scouts_is_no_usable_patient(tmp_path: Path) -> None:
    write_series(tmp_path, shape=(8, 6, 2), image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
                 series_description="Topo")
    cohort = scan(tmp_path)
    assert cohort.patients == ()
    kinds = {s.kind for s in cohort.skipped}
    assert kinds == {SkipKind.SERIES, SkipKind.STUDY, SkipKind.PATIENT}
    assert any("localizer" in s.reason for s in cohort.skipped if s.kind is SkipKind.SERIES)
    with pytest.raises(InputDataError, match="only localizer/scout images") as info:
        discover(tmp_path)
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    assert "\n" not in str(info.value)


def test_scout_sharing_the_series_uid_is_split_off(tmp_path: Path) -> None:
    series = generate_uid()
    study = generate_uid()
    write_series(tmp_path / "axial", shape=(8, 6, 6), series_uid=series, study_uid=study)
    # One coronal scout with the same SeriesInstanceUID and an ordinary ImageType.
    write_series(tmp_path / "scout", shape=(10, 4, 1), series_uid=series, study_uid=study,
                 orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0), seed=5)
    cohort = scan(tmp_path)
    image = cohort.patients[0].timepoints[0].image
    assert image.shape == (8, 6, 6)
    assert all("axial" in str(f) for f in image.files)
    assert "taken for a scout" in reasons(cohort)["IM00001.dcm"]


def test_localizer_images_inside_an_axial_series_are_dropped(tmp_path: Path) -> None:
    series = generate_uid()
    study = generate_uid()
    write_series(tmp_path / "axial", shape=(8, 6, 5), series_uid=series, study_uid=study)
    write_series(tmp_path / "loc", shape=(8, 6, 1), series_uid=series, study_uid=study,
                 image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), origin=(0, 0, -300))
    cohort = scan(tmp_path)
    assert cohort.patients[0].timepoints[0].image.file_count == 5
    assert "localizer image(s) (ImageType LOCALIZER)" in reasons(cohort)["IM00001.dcm"]


@pytest.mark.parametrize("modalities",
                         [("SR",), ("RTSTRUCT",), ("SEG",), ("SR", "RTSTRUCT", "SEG")])
def test_only_non_image_objects_is_no_usable_patient(tmp_path: Path,
                                                     modalities: tuple[str, ...]) -> None:
    study = generate_uid()
    for modality in modalities:
        write_non_image(tmp_path / f"{modality.lower()}.dcm", modality=modality, study_uid=study)
    cohort = scan(tmp_path)
    assert cohort.patients == ()
    why = reasons(cohort)
    for modality in modalities:
        if modality == "SR":
            assert "SR (structured report), not an image" in why["sr.dcm"]
        else:  # a SEG or RTSTRUCT is a mask for the image series it references: none here
            assert why[f"{modality.lower()}.dcm"].startswith(f"not used as a mask: {modality} ")
    with pytest.raises(InputDataError, match="only non-image objects" if "SR" in modalities
                       else "not used as a mask"):
        discover(tmp_path)


def test_non_image_objects_beside_images_are_skipped_with_reason(tmp_path: Path) -> None:
    study = generate_uid()
    write_series(tmp_path / "ct", shape=SHAPE, study_uid=study)
    write_non_image(tmp_path / "report", modality="SR", study_uid=study)
    cohort = scan(tmp_path)
    assert len(cohort.patients) == 1
    assert "SR (structured report), not an image" in reasons(cohort)["report"]


def test_dicomdir_pointing_at_missing_files(tmp_path: Path) -> None:
    from pydicom.fileset import FileSet

    source = write_series(tmp_path / "src", shape=SHAPE)
    fileset = FileSet()
    for path in source:
        fileset.add(path)
    media = tmp_path / "media"
    fileset.write(media)
    referenced = sorted(p for p in media.rglob("*") if p.is_file() and p.name != "DICOMDIR")
    assert len(referenced) == SHAPE[2]
    referenced[2].unlink()
    for target in (media, media / "DICOMDIR"):
        cohort = scan(target)
        missing = [s for s in cohort.skipped if "referenced by DICOMDIR" in s.reason]
        assert [Path(s.path).name for s in missing] == [referenced[2].name]
        assert any("4 referenced files are missing" in w or "of 5 referenced" in w
                   for w in cohort.warnings)
    # Every referenced file missing: nothing usable, one line.
    for path in referenced:
        path.unlink(missing_ok=True)
    with pytest.raises(InputDataError, match="no usable patient"):
        discover(media / "DICOMDIR")


def test_unreadable_folder_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, where chmod cannot deny access: inject the error os.scandir raises.
    write_series(tmp_path / "ok", shape=SHAPE)
    locked = tmp_path / "locked"
    write_series(locked, shape=SHAPE, patient_id="LOCKED")
    real_scandir = os.scandir

    def scandir(path: str | os.PathLike[str]) -> object:
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    cohort = scan(tmp_path)
    assert [p.patient_id for p in cohort.patients] == ["PAT001"]
    assert reasons(cohort)["locked"] == "cannot list folder: permission denied"
    assert [s.kind for s in cohort.skipped] == [SkipKind.FOLDER]


def test_symlink_loops_are_not_followed_forever(tmp_path: Path) -> None:
    write_series(tmp_path / "a" / "series", shape=SHAPE)
    (tmp_path / "a" / "series" / "back_to_a").symlink_to(tmp_path / "a")
    (tmp_path / "self").symlink_to(tmp_path / "self")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    cohort = scan(tmp_path)
    assert cohort.patients[0].timepoints[0].image.file_count == SHAPE[2]
    why = reasons(cohort)
    assert "already scanned" in why["back_to_a"]
    assert why["self"].startswith("symbolic link loop")
    assert why["dangling"].startswith("broken symbolic link")


def test_symlinked_series_folder_is_followed(tmp_path: Path) -> None:
    write_series(tmp_path / "store" / "series", shape=SHAPE)
    (tmp_path / "view").mkdir()
    (tmp_path / "view" / "link").symlink_to(tmp_path / "store" / "series")
    cohort = scan(tmp_path / "view")
    assert cohort.patients[0].timepoints[0].image.file_count == SHAPE[2]


def test_non_ascii_paths(tmp_path: Path) -> None:
    folder = tmp_path / "Patiënt_Jörg" / "étude 2024 — CT" / "序列"
    write_series(folder, shape=SHAPE, naming="random", patient_id="PÄT-1")
    cohort = scan(tmp_path)
    image = cohort.patients[0].timepoints[0].image
    assert all("序列" in str(f) for f in image.files)
    assert cohort.patients[0].patient_id == "PÄT-1"
    assert load_image(image).shape == SHAPE


def test_files_without_patient_id_are_skipped(tmp_path: Path) -> None:
    write_series(tmp_path / "anon", shape=(8, 6, 2), patient_id="")
    write_series(tmp_path / "ok", shape=SHAPE)
    cohort = scan(tmp_path)
    why = reasons(cohort)
    assert why["IM00001.dcm"].startswith("no PatientID")
    assert len(cohort.patients) == 1


def test_date_falls_back_to_acquisition_date(tmp_path: Path) -> None:
    def no_study_date(k: int, ds: object) -> None:
        ds.StudyDate = ""  # type: ignore[attr-defined]
        ds.SeriesDate = "20230505"  # type: ignore[attr-defined]

    write_series(tmp_path, shape=SHAPE, study_date="20230606", edit=no_study_date)
    timepoint = scan(tmp_path).patients[0].timepoints[0]
    assert str(timepoint.date) == "2023-06-06"  # AcquisitionDate comes before SeriesDate


def test_empty_folder_and_missing_path_raise_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="folder is empty"):
        discover(tmp_path)
    with pytest.raises(LayoutError, match="no such file or folder"):
        discover(tmp_path / "absent")
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(LayoutError, match="1 file\\(s\\) looked at, none a readable DICOM"):
        discover(tmp_path)


def test_enhanced_multiframe_file_is_a_series(tmp_path: Path) -> None:
    from tests.dicom_factory import write_enhanced

    write_enhanced(tmp_path / "enhanced.dcm", shape=(8, 6, 7), frame_order=[3, 0, 6, 1, 5, 2, 4])
    image = scan(tmp_path).patients[0].timepoints[0].image
    assert image.shape == (8, 6, 7)
    assert image.file_count == 1
    assert load_image(image).shape == (8, 6, 7)
