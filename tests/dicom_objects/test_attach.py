"""SEG and RTSTRUCT objects of a DICOM export attached (by discovery) to the series they
reference."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
from typer.testing import CliRunner

from medseq.cli import app
from medseq.dicom_objects.attach import AnnotationObject, load_annotation
from medseq.io.cohort import MaskSource
from medseq.io.discover import discover
from medseq.io.load import load_image, load_timepoint_mask
from medseq.tracking.lesions import find_lesions
from tests.dicom_objects.export_case import build
from tests.dicom_objects.factory import circle, write_ct, write_input_seg, write_rtstruct


def _frame(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).FrameOfReferenceUID)


def test_objects_attach_to_their_timepoints_and_bad_ones_are_refused(tmp_path: Path) -> None:
    tree = tmp_path / "export"
    first, _ = write_ct(tree / "s0", study_date="20240101")
    second, grid1 = write_ct(tree / "s1", study_date="20240301")
    rt = write_rtstruct(tree / "s0" / "rt.dcm", first,
                        {"Lesion": [circle((0.0, 0.0, 45.0), 3.0)]})
    lesion = np.zeros(grid1.shape, dtype=bool)
    lesion[10:20, 10:20, 3:6] = True
    seg = write_input_seg(tree / "s1" / "seg.dcm", second, [lesion], ["Lesion"])
    write_rtstruct(tree / "s1" / "elsewhere.dcm", second,
                   {"L": [circle((0.0, 0.0, 45.0), 3.0)]}, series_uid="1.2.3.9")
    other = pydicom.dcmread(seg)
    other.FrameOfReferenceUID = "1.2.3.10"
    other.SOPInstanceUID = pydicom.uid.generate_uid()
    other.save_as(tree / "s1" / "other_frame.dcm")

    cohort = discover(tree)

    timepoints = cohort.patients[0].timepoints
    assert [(tp.mask.name if tp.mask else None, tp.mask_source) for tp in timepoints] == [
        ("rt.dcm", MaskSource.RTSTRUCT), ("seg.dcm", MaskSource.SEG)]
    reasons = {Path(s.path).name: s.reason for s in cohort.skipped}
    assert reasons["elsewhere.dcm"] == (
        "not used as a mask: RTSTRUCT references series 1.2.3.9, which is not an image series "
        "of this export (or not the one chosen for its study)")
    assert reasons["other_frame.dcm"].startswith(
        "not used as a mask: SEG is on frame of reference 1.2.3.10")
    tp = timepoints[1]
    obj = AnnotationObject(path=seg, kind="SEG", series_uids=(), frame_of_reference_uid="")
    mask = load_annotation(obj, load_image(tp.image), frame_of_reference_uid=_frame(second[0]))
    assert np.array_equal(mask.array > 0, lesion)
    assert tp.image.frame_of_reference_uid == _frame(second[0])
    rt_mask = load_timepoint_mask(timepoints[0], like=load_image(timepoints[0].image))
    assert rt_mask is not None
    assert rt_mask.array.sum() > 0
    assert rt.name == "rt.dcm"


def test_a_seg_medseq_wrote_reads_back_as_the_mask_of_its_timepoint(tmp_path: Path) -> None:
    case = build(tmp_path / "case")
    runner = CliRunner()
    tracking = tmp_path / "tracking"
    assert runner.invoke(app, ["track", str(case.cache), "-o", str(tracking)]).exit_code == 0
    out = tmp_path / "dicom"
    result = runner.invoke(app, ["export-dicom", str(tracking), "-o", str(out), "--input",
                                 str(case.input_csv), "--keep-ids"])
    assert result.exit_code == 0, result.stderr
    tree = tmp_path / "pacs"
    for n in (0, 1):
        shutil.copytree(case.input_csv.parent / f"pat001_t{n}", tree / f"study{n}")
        shutil.copy(out / case.patient_key / f"t0{n}_SEG.dcm", tree / f"study{n}")

    cohort = discover(tree)

    assert cohort.skipped == ()
    for n, tp in enumerate(cohort.patients[0].timepoints):
        assert tp.mask is not None
        assert tp.mask.name == f"t0{n}_SEG.dcm"
        assert tp.mask_source is MaskSource.SEG
        image = load_image(tp.image)
        mask = load_timepoint_mask(tp, like=image)
        assert mask is not None
        assert np.array_equal(mask.array > 0, case.masks[n] > 0)
        ours = sorted((les.volume_ml, les.longest_diameter_mm) for les in
                      find_lesions(mask.array, image.affine).lesions)
        given = sorted((les.volume_ml, les.longest_diameter_mm) for les in
                       find_lesions(case.masks[n], case.grids[n].affine).lesions)
        np.testing.assert_allclose(np.asarray(ours), np.asarray(given), atol=1e-6)
