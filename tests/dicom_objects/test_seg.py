"""DICOM SEG input: identical to the mask it was made from; selection, overlaps, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseq.dicom_objects.errors import AnnotationError
from medseq.dicom_objects.grid import ImageGrid
from medseq.dicom_objects.labels import compile_roi_pattern
from medseq.dicom_objects.seg import read_seg
from medseq.errors import ExitCode
from medseq.io.nifti import load_nifti, save_nifti
from medseq.io.volume import Volume
from tests.dicom_objects.factory import write_ct, write_input_seg


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], ImageGrid]:
    return write_ct(tmp_path_factory.mktemp("ct"))


def _labels(shape: tuple[int, int, int]) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.uint8)
    labels[10:18, 8:15, 3:7] = 1
    labels[30:40, 25:33, 6:11] = 2
    labels[31:33, 26:28, 8] = 0  # a hole
    return labels


def test_seg_gives_the_nifti_it_was_made_from(ct: tuple[list[Path], ImageGrid],
                                             tmp_path: Path) -> None:
    paths, grid = ct
    nifti = tmp_path / "mask.nii.gz"
    save_nifti(Volume(_labels(grid.shape), grid.affine), nifti)
    truth = load_nifti(nifti).array
    seg = write_input_seg(tmp_path / "seg.dcm", paths, [truth == 1, truth == 2],
                          ["Lesion 1", "Lesion 2"])

    mask = read_seg(seg, grid)

    assert np.array_equal(mask.array, truth)
    assert [(lab.label, lab.name, lab.number) for lab in mask.labels] == [
        (1, "Lesion 1", 1), (2, "Lesion 2", 2)]
    assert mask.kind == "SEG"
    assert not mask.warnings


def test_fractional_seg_and_reversed_slice_order(tmp_path: Path) -> None:
    paths, grid = write_ct(tmp_path / "ct", orientation=(1.0, 0.0, 0.0, 0.0, -1.0, 0.0))
    truth = _labels(grid.shape)
    flipped = truth[:, :, ::-1]  # source k of the reversed list is slice 13 - k
    seg = write_input_seg(tmp_path / "seg.dcm", paths[::-1], [flipped == 1, flipped == 2],
                          ["a", "b"], fractional=True)
    assert np.array_equal(read_seg(seg, grid).array, truth)


def test_labelmap_seg(ct: tuple[list[Path], ImageGrid], tmp_path: Path) -> None:
    paths, grid = ct
    truth = _labels(grid.shape)
    seg = write_input_seg(tmp_path / "seg.dcm", paths, [truth == 1, truth == 2], ["a", "b"],
                          labelmap=True)
    mask = read_seg(seg, grid)
    assert np.array_equal(mask.array, truth)


def test_roi_selects_segments_and_numbers_them(ct: tuple[list[Path], ImageGrid],
                                               tmp_path: Path) -> None:
    paths, grid = ct
    truth = _labels(grid.shape)
    seg = write_input_seg(tmp_path / "seg.dcm", paths, [truth == 1, truth == 2],
                          ["Liver", "Lesion"])
    mask = read_seg(seg, grid, roi=compile_roi_pattern("lesion"))
    assert [(lab.label, lab.number) for lab in mask.labels] == [(1, 2)]
    assert np.array_equal(mask.array, (truth == 2).astype(np.uint8))


def test_overlapping_segments_go_to_the_later_one_with_a_warning(
        ct: tuple[list[Path], ImageGrid], tmp_path: Path) -> None:
    paths, grid = ct
    first = np.zeros(grid.shape, dtype=bool)
    first[10:20, 10:20, 4:6] = True
    second = np.zeros(grid.shape, dtype=bool)
    second[15:25, 10:20, 5:7] = True
    seg = write_input_seg(tmp_path / "seg.dcm", paths, [first, second], ["one", "two"])
    mask = read_seg(seg, grid)
    assert mask.array[16, 12, 5] == 2
    assert mask.array[11, 12, 5] == 1
    assert mask.warnings == (f"{seg}: segments 1 (one) and 2 (two) overlap in 50 voxel(s); "
                             "they went to the later one, 2 (two)",)


def _refusal(path: Path, grid: ImageGrid, **kwargs: object) -> str:
    with pytest.raises(AnnotationError) as info:
        read_seg(path, grid, **kwargs)  # type: ignore[arg-type]
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


def test_refusals(ct: tuple[list[Path], ImageGrid], tmp_path: Path) -> None:
    paths, grid = ct
    truth = _labels(grid.shape)
    seg = write_input_seg(tmp_path / "seg.dcm", paths, [truth == 1, truth == 2], ["a", "b"])
    other_for = ImageGrid(grid.shape, grid.affine, grid.series_uid, "1.2.3.4")
    assert "frame of reference" in _refusal(seg, other_for)
    other_series = ImageGrid(grid.shape, grid.affine, "1.2.3.5", grid.frame_of_reference_uid)
    assert "not the image series 1.2.3.5" in _refusal(seg, other_series)
    shifted = grid.affine.copy()
    shifted[2, 3] += 0.4  # frames fall between the image's planes
    assert "frame 1 does not lie on the image grid" in _refusal(
        seg, ImageGrid(grid.shape, shifted, grid.series_uid, grid.frame_of_reference_uid))
    assert "no segment name matches --roi 'zzz'" in _refusal(
        seg, grid, roi=compile_roi_pattern("zzz"))
    empty = write_input_seg(tmp_path / "empty.dcm", paths, [truth == 1, truth == 9],
                            ["a", "nothing"])
    assert "segment 2 (nothing) is empty" in _refusal(empty, grid)
    assert "not a readable DICOM SEG" in _refusal(paths[0], grid)
