"""RTSTRUCT contours onto the image grid: agreement with the NIfTI mask, and every refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseq.dicom_objects.errors import AnnotationError
from medseq.dicom_objects.grid import ImageGrid
from medseq.dicom_objects.labels import compile_roi_pattern
from medseq.dicom_objects.rtstruct import read_rtstruct
from medseq.errors import ExitCode
from medseq.io.nifti import load_nifti, save_nifti
from medseq.io.volume import Volume
from tests.dicom_objects.factory import circle, voxel_centres_lps, write_ct, write_rtstruct

CENTRE = (0.0, 0.0, 47.0)  # LPS mm: voxel (24, 22, 7)
RADIUS = 5.0  # a 10 mm lesion
HOLE = 1.5
ISLAND = (8.5, 0.0)
ISLAND_RADIUS = 1.5


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], ImageGrid]:
    return write_ct(tmp_path_factory.mktemp("ct"))


def _lesion_contours() -> list[np.ndarray]:
    """A 10 mm sphere as axial contours; a hole on three slices; a second island on one."""
    contours = []
    for dz in range(-5, 6):
        z = CENTRE[2] + dz
        r = float(np.sqrt(max(RADIUS**2 - dz**2, 0.0)))
        if r < 0.6:
            continue
        contours.append(circle((CENTRE[0], CENTRE[1], z), r))
        if abs(dz) <= 1:
            contours.append(circle((CENTRE[0], CENTRE[1], z), HOLE, clockwise=True))
        if dz == 0:
            contours.append(circle((ISLAND[0], ISLAND[1], z), ISLAND_RADIUS))
    return contours


def _truth(grid: ImageGrid) -> np.ndarray:
    """The same lesion evaluated at voxel centres, the way a NIfTI mask would be drawn."""
    p = voxel_centres_lps(grid)
    dx, dy, dz = (p[..., a] - CENTRE[a] for a in range(3))
    r_plane = np.sqrt(dx**2 + dy**2)
    on_slice = np.abs(dz - np.rint(dz)) < 1e-6
    radius = np.sqrt(np.clip(RADIUS**2 - dz**2, 0.0, None))
    inside = on_slice & (r_plane <= radius) & (radius >= 0.6)
    inside &= ~((np.abs(dz) <= 1) & (r_plane <= HOLE))
    island = np.hypot(p[..., 0] - ISLAND[0], p[..., 1] - ISLAND[1]) <= ISLAND_RADIUS
    return inside | (island & (np.abs(dz) < 1e-6))


def test_contours_agree_with_the_nifti_mask(ct: tuple[list[Path], ImageGrid],
                                            tmp_path: Path) -> None:
    paths, grid = ct
    rt = write_rtstruct(tmp_path / "rt.dcm", paths, {"Lesion": _lesion_contours()})
    nifti = tmp_path / "mask.nii.gz"
    save_nifti(Volume(_truth(grid).astype(np.uint8), grid.affine), nifti)
    truth = load_nifti(nifti).array > 0

    mask = read_rtstruct(rt, grid)

    got = mask.array > 0
    dice = 2.0 * np.count_nonzero(got & truth) / (got.sum() + truth.sum())
    assert dice >= 0.95, dice
    assert [(lab.label, lab.name, lab.number) for lab in mask.labels] == [(1, "Lesion", 1)]
    assert mask.kind == "RTSTRUCT"
    assert mask.array[24, 22, 7] == 0  # the hole
    assert mask.array[24, 22, 10] == 1  # no hole three slices up
    assert mask.array[41, 22, 7] == 1  # the second contour of slice 7 (LPS x 8.5 mm)
    assert not mask.warnings


def test_roi_regex_selects_and_numbers_lesions(ct: tuple[list[Path], ImageGrid],
                                               tmp_path: Path) -> None:
    paths, grid = ct
    rt = write_rtstruct(tmp_path / "rt.dcm", paths, {
        "Body": [circle((0.0, 0.0, 44.0), 10.0)],
        "lesion A": [circle((-5.0, -5.0, 45.0), 2.0)],
        "Lesion B": [circle((5.0, 5.0, 46.0), 2.0)],
    })
    mask = read_rtstruct(rt, grid, roi=compile_roi_pattern("^lesion"))
    assert [(lab.label, lab.name, lab.number) for lab in mask.labels] == [
        (1, "lesion A", 2), (2, "Lesion B", 3)]
    assert set(np.unique(mask.array)) == {0, 1, 2}
    assert mask.array[14, 12, 5] == 1
    assert mask.array[34, 32, 6] == 2
    assert set(np.unique(read_rtstruct(rt, grid).array)) == {0, 1, 2, 3}


def test_overlapping_rois_go_to_the_later_one_with_a_warning(
        ct: tuple[list[Path], ImageGrid], tmp_path: Path) -> None:
    paths, grid = ct
    rt = write_rtstruct(tmp_path / "rt.dcm", paths, {
        "first": [circle((0.0, 0.0, 45.0), 3.0)], "second": [circle((2.0, 0.0, 45.0), 3.0)]})
    mask = read_rtstruct(rt, grid)
    assert mask.array[24, 22, 5] == 2  # shared voxel
    assert mask.array[20, 22, 5] == 1  # only in the first (LPS x -2 mm)
    assert len(mask.warnings) == 1
    assert "ROIs 1 (first) and 2 (second) overlap" in mask.warnings[0]
    assert "went to the later one, 2 (second)" in mask.warnings[0]


def _refusal(path: Path, grid: ImageGrid, **kwargs: object) -> str:
    with pytest.raises(AnnotationError) as info:
        read_rtstruct(path, grid, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


def test_refusals_name_the_file_and_the_reason(ct: tuple[list[Path], ImageGrid],
                                               tmp_path: Path) -> None:
    paths, grid = ct
    ok = [circle((0.0, 0.0, 45.0), 3.0)]
    cases = {
        "other frame of reference": (
            write_rtstruct(tmp_path / "for.dcm", paths, {"L": ok}, frame_uid="1.2.3.4"),
            "frame of reference 1.2.3.4"),
        "other series": (
            write_rtstruct(tmp_path / "series.dcm", paths, {"L": ok}, series_uid="1.2.3.5"),
            "references series 1.2.3.5, not the image series"),
        "off plane": (
            write_rtstruct(tmp_path / "plane.dcm", paths,
                           {"L": [circle((0.0, 0.0, 45.3), 3.0)]}),
            "does not lie on an image plane (0.300 mm off"),
        "outside": (
            write_rtstruct(tmp_path / "out.dcm", paths, {"L": [circle((0.0, 0.0, 80.0), 3.0)]}),
            "lies outside the image"),
        "open": (
            write_rtstruct(tmp_path / "open.dcm", paths,
                           {"L": [("OPEN_PLANAR", circle((0.0, 0.0, 45.0), 3.0))]}),
            "contour 1 is OPEN_PLANAR, not CLOSED_PLANAR"),
        "point": (
            write_rtstruct(tmp_path / "point.dcm", paths,
                           {"L": [("POINT", np.array([[0.0, 0.0, 45.0]]))]}),
            "is POINT, not CLOSED_PLANAR"),
        "empty": (write_rtstruct(tmp_path / "empty.dcm", paths, {"L": []}),
                  "ROI 1 (L) is empty (no contours)"),
        "tiny": (
            write_rtstruct(tmp_path / "tiny.dcm", paths,
                           {"L": [circle((0.1, 0.1, 45.0), 0.1)]}),
            "encloses no voxel centre"),
    }
    for name, (path, reason) in cases.items():
        assert reason in _refusal(path, grid), name
    assert "no ROI name matches --roi 'tumou?r'" in _refusal(
        cases["tiny"][0], grid, roi=compile_roi_pattern("tumou?r"))
    not_rt = tmp_path / "not.dcm"
    not_rt.write_bytes(b"\0" * 10)
    assert "not a readable DICOM file" in _refusal(not_rt, grid)
    assert "not an RT structure set" in _refusal(paths[0], grid)
