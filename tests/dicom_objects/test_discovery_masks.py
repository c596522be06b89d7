"""A DICOM export whose lesion masks are a SEG and an RTSTRUCT: discovery attaches them, so
``scan``, ``preprocess`` and ``track`` need no manifest, and measure what NIfTI masks give."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from typer.testing import CliRunner

from medseq.cli import app
from medseq.dicom_objects.grid import voxels_to_lps
from medseq.io.cohort import MaskSource
from medseq.io.discover import discover
from medseq.io.load import load_image, load_timepoint_mask
from tests.dicom_factory import lps_affine_ras, write_series
from tests.dicom_objects.factory import write_input_seg, write_rtstruct

SHAPE = (32, 32, 12)
SPACING = (1.0, 1.0, 2.0)
ORIGIN = (-50.0, -40.0, 100.0)
ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
AFFINE = lps_affine_ras(spacing=SPACING, orientation=ORIENTATION, origin=ORIGIN)
Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
BOXES: dict[str, tuple[Box, Box]] = {  # (i, j, k) ranges per timepoint, end excluded
    "Lesion": (((8, 18), (8, 18), (3, 7)), ((10, 16), (10, 16), (4, 7))),
    "Other": (((22, 28), (22, 28), (7, 10)), ((22, 28), (22, 28), (7, 10))),
}
runner = CliRunner()


@dataclass(frozen=True)
class Export:
    tree: Path
    """s0/, s1/: the CT series; objects/: rt.dcm (timepoint 0) and seg.dcm (timepoint 1)."""
    manifest: Path
    """The same images with the same masks as NIfTI files."""
    nifti_masks: tuple[Path, Path]


def _box(box: Box) -> np.ndarray:
    layer = np.zeros(SHAPE, dtype=bool)
    (i0, i1), (j0, j1), (k0, k1) = box
    layer[i0:i1, j0:j1, k0:k1] = True
    return layer


def _square_contours(box: Box) -> list[np.ndarray]:
    """One contour per slice, its edges halfway between voxel centres: it encloses the box."""
    (i0, i1), (j0, j1), (k0, k1) = box
    corners = [(i0 - 0.5, j0 - 0.5), (i1 - 0.5, j0 - 0.5), (i1 - 0.5, j1 - 0.5),
               (i0 - 0.5, j1 - 0.5)]
    return [voxels_to_lps(np.asarray([(i, j, k) for i, j in corners], dtype=float), AFFINE)
            for k in range(k0, k1)]


def _export(root: Path) -> Export:
    tree = root / "export"
    series = [write_series(tree / f"s{n}", shape=SHAPE, spacing=SPACING, origin=ORIGIN,
                           orientation=ORIENTATION, study_date=date, seed=0)
              for n, date in enumerate(("20240115", "20240415"))]
    write_rtstruct(tree / "objects" / "rt.dcm", series[0],
                   {name: _square_contours(boxes[0]) for name, boxes in BOXES.items()})
    write_input_seg(tree / "objects" / "seg.dcm", series[1],
                    [_box(boxes[1]) for boxes in BOXES.values()], list(BOXES))
    rows = ["patient_id,timepoint,date,image,mask"]
    masks = []
    for n, date in enumerate(("2024-01-15", "2024-04-15")):
        labels = np.zeros(SHAPE, dtype=np.uint8)
        for label, boxes in enumerate(BOXES.values(), start=1):
            labels[_box(boxes[n])] = label
        masks.append(root / f"mask{n}.nii.gz")
        nib.save(nib.Nifti1Image(labels, AFFINE), masks[-1])
        rows.append(f"PAT001,t{n},{date},{tree / f's{n}'},{masks[-1]}")
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return Export(tree=tree, manifest=manifest, nifti_masks=(masks[0], masks[1]))


def _lesions(out: Path) -> list[tuple[str, ...]]:
    """lesions.csv rows without the (pseudonymous, per cache) patient id."""
    with open(out / "lesions.csv", newline="") as handle:
        return sorted(tuple(v for k, v in row.items() if k != "patient_id")
                      for row in csv.DictReader(handle))


def test_seg_and_rtstruct_masks_need_no_manifest_and_measure_like_nifti(tmp_path: Path
                                                                        ) -> None:
    case = _export(tmp_path)

    scanned = runner.invoke(app, ["scan", str(case.tree), "--json", "--roi", "^les"])
    assert scanned.exit_code == 0, scanned.stderr
    [patient] = json.loads(scanned.stdout)["patients"]
    assert [(Path(tp["mask"]).name, tp["mask_source"], tp["mask_rois"])
            for tp in patient["timepoints"]] == [("rt.dcm", "RTSTRUCT", ["Lesion"]),
                                                 ("seg.dcm", "SEG", ["Lesion"])]
    table = runner.invoke(app, ["scan", str(case.tree)])
    assert "rt.dcm (RTSTRUCT: Lesion, Other)" in " ".join(table.stdout.split())

    cache = tmp_path / "cache"
    done = runner.invoke(app, ["preprocess", str(case.tree), "-o", str(cache)])
    assert done.exit_code == 0, done.stderr
    dicom_out, nifti_out = tmp_path / "from_dicom", tmp_path / "from_nifti"
    assert runner.invoke(app, ["track", str(cache), "-o", str(dicom_out)]).exit_code == 0
    done = runner.invoke(app, ["track", str(case.manifest), "-o", str(nifti_out)])
    assert done.exit_code == 0, done.stderr
    rows = _lesions(dicom_out)
    assert len(rows) == 4  # two lesions, two timepoints
    assert rows == _lesions(nifti_out)

    # --roi travels into the cache's settings: a cache made without it refuses it...
    refused = runner.invoke(app, ["track", str(cache), "-o", str(tmp_path / "x"),
                                  "--roi", "lesion"])
    assert refused.exit_code == 1
    assert "--roi applies when PATH is raw input" in refused.stderr
    # ...and raw input tracked with it keeps only the selected ROI and segment.
    chosen = tmp_path / "chosen"
    done = runner.invoke(app, ["track", str(case.tree), "-o", str(chosen), "--roi", "lesion"])
    assert done.exit_code == 0, done.stderr
    assert json.loads((chosen / "cache" / "manifest.json").read_text())["config"]["roi"] == (
        "lesion")
    assert len(_lesions(chosen)) == 2


def test_masks_load_on_the_image_grid_and_bad_objects_are_skipped(tmp_path: Path) -> None:
    case = _export(tmp_path)
    seg = pydicom.dcmread(case.tree / "objects" / "seg.dcm")
    seg.FrameOfReferenceUID = "1.2.3.10"
    seg.SOPInstanceUID = pydicom.uid.generate_uid()
    seg.save_as(case.tree / "objects" / "other_frame.dcm")
    write_rtstruct(case.tree / "objects" / "elsewhere.dcm", sorted((case.tree / "s0").iterdir()),
                   {"L": _square_contours(BOXES["Lesion"][0])}, series_uid="1.2.3.9")

    cohort = discover(case.tree)

    [patient] = cohort.patients
    assert [(tp.mask_source, tp.mask.name if tp.mask else None)
            for tp in patient.timepoints] == [(MaskSource.RTSTRUCT, "rt.dcm"),
                                              (MaskSource.SEG, "seg.dcm")]
    reasons = {Path(s.path).name: s.reason for s in cohort.skipped}
    assert reasons["elsewhere.dcm"] == (
        "not used as a mask: RTSTRUCT references series 1.2.3.9, which is not an image series "
        "of this export (or not the one chosen for its study)")
    assert reasons["other_frame.dcm"].startswith(
        "not used as a mask: SEG is on frame of reference 1.2.3.10")
    for n, tp in enumerate(patient.timepoints):
        image = load_image(tp.image)
        mask = load_timepoint_mask(tp, like=image)
        given = np.asarray(nib.load(case.nifti_masks[n]).dataobj)
        assert mask is not None
        assert np.array_equal(mask.array, given)
        only = load_timepoint_mask(tp, like=image, roi="^other$")
        assert only is not None
        assert np.array_equal(only.array, (given == 2).astype(np.uint8))
