"""Loading and saving NIfTI volumes and masks: types, geometry, refusals."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseq.errors import ExitCode, NiftiError
from medseq.io.load import load_mask
from medseq.io.nifti import load_nifti, read_nifti_header, save_nifti
from medseq.io.volume import Volume
from tests.io.discovery_files import write_nifti


def test_int16_image_stays_int16_with_its_affine(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "image.nii.gz", dtype=np.int16)
    volume = load_nifti(path)
    assert volume.array.dtype == np.int16
    assert volume.shape == (6, 5, 4)
    assert volume.spacing == pytest.approx((0.8, 0.8, 2.5))
    np.testing.assert_array_equal(volume.array, np.asarray(nib.load(path).dataobj))


def test_scaled_integers_become_int16_or_float32(tmp_path: Path) -> None:
    data = np.arange(6 * 5 * 4, dtype=np.uint16).reshape(6, 5, 4)
    hu = load_nifti(_scaled(tmp_path / "hu.nii", data, 1.0, -1024.0))
    assert hu.array.dtype == np.int16
    np.testing.assert_array_equal(hu.array, data.astype(np.int32) - 1024)
    half = load_nifti(_scaled(tmp_path / "half.nii", data, 0.5, 3.0))
    assert half.array.dtype == np.float32
    np.testing.assert_allclose(half.array, data * 0.5 + 3.0)


def _scaled(path: Path, data: np.ndarray, slope: float, inter: float) -> Path:
    """Write ``data`` with scl_slope/scl_inter patched into the header (nibabel resets them)."""
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    raw = bytearray(path.read_bytes())
    raw[112:120] = np.array([slope, inter], dtype="<f4").tobytes()
    path.write_bytes(bytes(raw))
    return path


def test_save_then_load_round_trips_and_writes_atomically(tmp_path: Path) -> None:
    affine = np.array([[0.0, -0.7, 0, 12.5], [0.9, 0, 0, -3], [0, 0, 2.0, 40], [0, 0, 0, 1]])
    array = np.random.default_rng(0).normal(size=(5, 4, 3)).astype(np.float32)
    target = tmp_path / "out" / "vol.nii.gz"
    save_nifti(Volume(array=array, affine=affine), target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["vol.nii.gz"]
    with gzip.open(target) as handle:
        assert handle.read(4)  # really gzipped
    back = load_nifti(target)
    np.testing.assert_allclose(back.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(back.array, array)
    header = nib.load(target).header
    assert int(header["qform_code"]) == 1
    assert int(header["sform_code"]) == 1


def test_four_d_image_is_refused(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "image.nii.gz", shape=(4, 4, 3, 2))
    with pytest.raises(NiftiError, match="4D with shape") as info:
        read_nifti_header(path)
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    with pytest.raises(NiftiError, match="4D"):
        load_nifti(path)


def test_trailing_singleton_axis_is_accepted(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "image.nii.gz", shape=(4, 4, 3, 1))
    assert load_nifti(path).shape == (4, 4, 3)


def test_nan_image_is_refused_with_the_count(tmp_path: Path) -> None:
    data = np.zeros((4, 4, 3), dtype=np.float32)
    data[1, 2, 0] = np.nan
    data[0, 0, 0] = np.inf
    path = write_nifti(tmp_path / "image.nii.gz", data=data)
    with pytest.raises(NiftiError, match="2 voxel\\(s\\) are NaN or infinite") as info:
        load_nifti(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty"), (b"this is not nifti" * 40, "not a readable NIfTI")])
def test_unreadable_files(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "image.nii"
    path.write_bytes(content)
    with pytest.raises(NiftiError, match=reason):
        load_nifti(path)


def test_truncated_gzip_is_refused(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "image.nii.gz", shape=(30, 30, 30))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NiftiError):
        load_nifti(path)


def test_mask_on_the_image_grid_loads_as_labels(tmp_path: Path) -> None:
    image = load_nifti(write_nifti(tmp_path / "image.nii.gz"))
    labels = np.zeros(image.shape, dtype=np.float32)
    labels[1:3, 1:3, 1] = 1.0
    mask = load_mask(write_nifti(tmp_path / "mask.nii.gz", data=labels), like=image)
    assert mask.array.dtype == np.uint8
    assert int(mask.array.sum()) == 4
    np.testing.assert_array_equal(mask.affine, image.affine)


def test_mask_stored_in_another_axis_order_is_reoriented(tmp_path: Path) -> None:
    image = load_nifti(write_nifti(tmp_path / "image.nii.gz"))
    labels = np.zeros(image.shape, dtype=np.uint8)
    labels[0, 1, 3] = 1
    labels[5, 4, 0] = 2
    # The same grid stored flipped along i and with j and k swapped.
    stored = np.transpose(labels[::-1], (0, 2, 1))
    flip_swap = np.zeros((4, 4))
    flip_swap[0, 0] = -1
    flip_swap[0, 3] = image.shape[0] - 1
    flip_swap[1, 2] = 1
    flip_swap[2, 1] = 1
    flip_swap[3, 3] = 1
    affine = image.affine @ flip_swap
    mask = load_mask(write_nifti(tmp_path / "mask.nii.gz", data=stored, affine=affine),
                     like=image)
    np.testing.assert_array_equal(mask.array, labels)
    assert mask.provenance.extra["reoriented"] is True


@pytest.mark.parametrize("change", ["shape", "origin", "spacing"])
def test_mask_with_other_geometry_is_refused(tmp_path: Path, change: str) -> None:
    image = load_nifti(write_nifti(tmp_path / "image.nii.gz"))
    affine = image.affine.copy()
    shape = image.shape
    if change == "shape":
        shape = (6, 5, 5)
    elif change == "origin":
        affine[0, 3] += 0.4
    else:
        affine[2, 2] = 2.0
    path = write_nifti(tmp_path / "mask.nii.gz", shape=shape, affine=affine, dtype=np.uint8)
    with pytest.raises(NiftiError, match=r"mask (shape \(.*\) )?(geometry )?differs") as info:
        load_mask(path, like=image)
    assert "mask.nii.gz" in str(info.value)
    assert "\n" not in str(info.value)


def test_fractional_or_negative_masks_are_refused(tmp_path: Path) -> None:
    image = load_nifti(write_nifti(tmp_path / "image.nii.gz"))
    soft = np.full(image.shape, 0.3, dtype=np.float32)
    with pytest.raises(NiftiError, match="not integer labels"):
        load_mask(write_nifti(tmp_path / "soft.nii.gz", data=soft), like=image)
    negative = np.full(image.shape, -1, dtype=np.int16)
    with pytest.raises(NiftiError, match="negative"):
        load_mask(write_nifti(tmp_path / "neg.nii.gz", data=negative), like=image)
