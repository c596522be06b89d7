"""Broken DICOM files and series raise one-line DicomErrors that name the file or series."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset

from medseq.errors import DicomError, ExitCode
from medseq.io.dicom import load_series, read_header
from tests.dicom_factory import default_pixels, make_colour, write_series

SHAPE = (10, 8, 6)


def load_error(folder: Path) -> DicomError:
    with pytest.raises(DicomError) as info:
        load_series(sorted(folder.iterdir()), name="series-A")
    err = info.value
    message = str(err)
    assert "\n" not in message
    assert err.exit_code == ExitCode.INVALID_INPUT
    return err


def edited(k_target: int, change: Callable[[Dataset], Any]) -> Callable[[int, Dataset], None]:
    def edit(k: int, ds: Dataset) -> None:
        if k == k_target:
            change(ds)
    return edit


def test_missing_slice(tmp_path: Path) -> None:
    write_series(tmp_path, shape=SHAPE, offsets=[0, 2.5, 5, 10, 12.5, 15])
    err = load_error(tmp_path)
    assert "series-A" in str(err)
    assert "missing slice" in str(err)
    assert "5.000 mm" in str(err)


def test_uneven_spacing(tmp_path: Path) -> None:
    write_series(tmp_path, shape=SHAPE, offsets=[0, 2.5, 5, 8.0, 10.5, 13])
    assert "slice spacing changes from 2.5 to 3.0 mm at z=105.0 mm" in str(load_error(tmp_path))


def test_spacing_that_changes_midway_is_not_a_missing_slice(tmp_path: Path) -> None:
    """A real GE CT: 4 mm slices, then 7 mm slices (7 is no multiple of 4: nothing missing)."""
    write_series(tmp_path, shape=(*SHAPE[:2], 7), offsets=[0, 4, 8, 12, 19, 26, 33])
    err = str(load_error(tmp_path))
    assert "slice spacing changes from 4.0 to 7.0 mm at z=112.0 mm" in err
    assert "IM00004.dcm and IM00005.dcm" in err
    assert "missing slice" not in err


def test_missing_slice_in_a_stack_is_still_named(tmp_path: Path) -> None:
    write_series(tmp_path, shape=(*SHAPE[:2], 5), offsets=[0, 2.5, 7.5, 10, 12.5])
    assert "missing slice: a gap of 5.000 mm" in str(load_error(tmp_path))


def test_two_slices_one_position_different_pixels(tmp_path: Path) -> None:
    write_series(tmp_path, shape=SHAPE, offsets=[0, 2.5, 5, 5, 7.5, 10])
    err = load_error(tmp_path)
    assert "two slices at one position with different pixels" in str(err)
    assert "IM0000" in str(err)


def test_duplicated_instance_is_dropped(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", shape=SHAPE)
    shutil.copy(paths[3], tmp_path / "s" / "copy_of_slice_3")
    volume = load_series(sorted((tmp_path / "s").iterdir()))
    assert volume.shape == SHAPE
    assert volume.provenance.extra["duplicates_removed"] == 1
    np.testing.assert_array_equal(volume.array, default_pixels(SHAPE) - 1024)


def test_same_pixels_new_uid_at_one_position_is_a_duplicate(tmp_path: Path) -> None:
    pixels = default_pixels(SHAPE)
    pixels = np.concatenate([pixels, pixels[:, :, 2:3]], axis=2)
    write_series(tmp_path, shape=(*SHAPE[:2], 7), pixels=pixels,
                 offsets=[0, 2.5, 5, 7.5, 10, 12.5, 5])
    volume = load_series(sorted(tmp_path.iterdir()))
    assert volume.shape == SHAPE
    np.testing.assert_array_equal(volume.array, default_pixels(SHAPE) - 1024)


def test_two_slices_one_depth_shifted_in_plane(tmp_path: Path) -> None:
    def shift(ds: Dataset) -> None:
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x + 5, y, z - 2.5]

    write_series(tmp_path, shape=SHAPE, edit=edited(3, shift))
    assert "different in-plane positions" in str(load_error(tmp_path))


def test_multi_echo_at_one_position(tmp_path: Path) -> None:
    write_series(tmp_path, shape=SHAPE, offsets=[0, 2.5, 5, 5, 7.5, 10],
                 edit=edited(3, lambda ds: setattr(ds, "EchoNumbers", 2)))
    assert "different acquisitions" in str(load_error(tmp_path))


def test_mixed_orientations(tmp_path: Path) -> None:
    write_series(tmp_path, shape=SHAPE, edit=edited(
        2, lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0, -1])))
    assert "mixed orientations" in str(load_error(tmp_path))


def test_slices_of_different_size(tmp_path: Path) -> None:
    def shrink(ds: Dataset) -> None:
        ds.Rows = 4
        ds.PixelData = np.zeros((4, SHAPE[0]), np.int16).tobytes()

    write_series(tmp_path, shape=SHAPE, edit=edited(4, shrink))
    err = load_error(tmp_path)
    assert "slices of different size" in str(err)
    assert "10x4" in str(err)


@pytest.mark.parametrize("keyword", ["ImagePositionPatient", "ImageOrientationPatient",
                                     "PixelSpacing"])
def test_missing_geometry_tag(tmp_path: Path, keyword: str) -> None:
    write_series(tmp_path, shape=SHAPE, edit=edited(1, lambda ds: delattr(ds, keyword)))
    err = load_error(tmp_path)
    assert f"IM00002.dcm has no valid {keyword}" in str(err)


def test_invalid_orientation(tmp_path: Path) -> None:
    write_series(tmp_path, shape=SHAPE, edit=lambda k, ds: setattr(
        ds, "ImageOrientationPatient", [1, 0, 0, 1, 0, 0]))
    assert "invalid ImageOrientationPatient" in str(load_error(tmp_path))


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(DicomError, match=r"empty\.dcm: empty \(0 bytes\)"):
        read_header(tmp_path / "empty.dcm")


def test_not_dicom(tmp_path: Path) -> None:
    (tmp_path / "notes.dcm").write_text("patient notes, not an image\n" * 20)
    with pytest.raises(DicomError, match=r"notes\.dcm: not a DICOM file"):
        read_header(tmp_path / "notes.dcm")


def test_truncated_in_pixels(tmp_path: Path) -> None:
    paths = write_series(tmp_path, shape=SHAPE)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) - 50])
    err = load_error(tmp_path)
    assert "IM00003.dcm: truncated" in str(err)


@pytest.mark.parametrize("cut", [300, 600, 900])
def test_truncated_in_header(tmp_path: Path, cut: int) -> None:
    """Cut in the file meta, in the dataset, just before the pixel data."""
    paths = write_series(tmp_path, shape=SHAPE)
    paths[0].write_bytes(paths[0].read_bytes()[:cut])
    with pytest.raises(DicomError, match="truncated") as info:
        read_header(paths[0])
    assert "IM00001.dcm" in str(info.value)


def test_truncated_compressed_pixels(tmp_path: Path) -> None:
    from pydicom.uid import RLELossless

    paths = write_series(tmp_path, shape=(32, 32, 3), transfer_syntax=RLELossless)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) - 400])
    err = load_error(tmp_path)
    assert paths[1].name in str(err)


def test_colour_image_refused(tmp_path: Path) -> None:
    write_series(tmp_path, shape=(*SHAPE[:2], 1), edit=lambda k, ds: make_colour(ds))
    assert "colour image" in str(load_error(tmp_path))


def test_empty_file_list() -> None:
    with pytest.raises(DicomError, match="no files"):
        load_series([], name="nothing")
