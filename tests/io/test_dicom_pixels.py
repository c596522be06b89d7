"""Pixel decoding: every transfer syntax, real files from pydicom's test data, value types."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from medseq.errors import DicomError
from medseq.io.dicom import load_series, read_header, read_pixels
from tests.dicom_factory import default_pixels, write_enhanced, write_series


def real_file(name: str) -> Path:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not in pydicom's test data here")
    return Path(str(path))


def pydicom_values(path: Path) -> np.ndarray:
    """What pydicom gives: pixel_array, then the top-level modality rescale."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        data = ds.pixel_array.astype(np.float64)
    return data * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))


# Uncompressed (little, big endian, implicit, deflated), RLE, JPEG lossless and extended,
# JPEG-LS, JPEG 2000, single and multi-frame, grey and colour.
REAL_FILES = [
    "CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
    "MR_small_expb.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm", "MR_small_padded.dcm", "JPEG-LL.dcm", "JPGExtended.dcm",
    "JPEG2000.dcm", "693_J2KR.dcm", "693_J2KI.dcm", "image_dfl.dcm",
    "emri_small.dcm", "emri_small_RLE.dcm", "emri_small_big_endian.dcm",
    "emri_small_jpeg_2k_lossless.dcm", "emri_small_jpeg_ls_lossless.dcm",
    "JPEGLSNearLossless_16.dcm", "gdcm-US-ALOKA-16_big.dcm", "SC_rgb_rle.dcm",
    "SC_rgb_jpeg_dcmtk.dcm", "rtdose.dcm",
]


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_file_decodes_like_pydicom(name: str) -> None:
    path = real_file(name)
    got = read_pixels(path)
    expected = pydicom_values(path)
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", [
    "CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
    "693_J2KR.dcm", "MR2_J2KR.dcm",
])
def test_real_single_slice_loads(name: str) -> None:
    path = real_file(name)
    volume = load_series([path])
    expected = pydicom_values(path).T[:, :, None]
    assert volume.shape == expected.shape
    np.testing.assert_allclose(volume.array, expected, rtol=1e-6)
    assert volume.array.dtype == (np.int16 if "CT" in name or "693" in name else np.float32)


def test_real_enhanced_ct_frames_in_position_order() -> None:
    path = real_file("eCT_Supplemental.dcm")
    volume = load_series([path])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        frames = ds.pixel_array.astype(np.int32)
    positions = np.array([[float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
                          for f in ds.PerFrameFunctionalGroupsSequence])
    shared = ds.SharedFunctionalGroupsSequence[0]
    iop = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, dtype=float)
    intercepts = [float((f if "PixelValueTransformationSequence" in f else shared)
                        .PixelValueTransformationSequence[0].RescaleIntercept)
                  for f in ds.PerFrameFunctionalGroupsSequence]
    order = np.argsort(positions @ np.cross(iop[:3], iop[3:]))  # along the slice normal
    assert volume.shape == (ds.Columns, ds.Rows, 2)
    for k, f in enumerate(order):
        np.testing.assert_array_equal(volume.array[:, :, k], (frames[f] + intercepts[f]).T)
        lps = positions[f] * [-1, -1, 1]
        np.testing.assert_allclose(volume.affine @ [0, 0, k, 1], [*lps, 1], atol=1e-6)


def test_undecodable_file_is_a_one_line_error() -> None:
    path = real_file("JPEG-lossy.dcm")  # 12-bit lossy JPEG: pylibjpeg cannot decode it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pydicom.dcmread(path).pixel_array  # noqa: B018
        except Exception:
            pass
        else:
            pytest.skip("this pydicom decodes 12-bit lossy JPEG")
    with pytest.raises(DicomError) as info:
        read_pixels(path)
    assert "\n" not in str(info.value)
    assert "JPEG-lossy.dcm: cannot decode pixel data" in str(info.value)


@pytest.mark.parametrize(("name", "syntax"), [
    ("ExplVR_LitEndNoMeta.dcm", ExplicitVRLittleEndian),
    ("ExplVR_BigEndNoMeta.dcm", ExplicitVRBigEndian),
    ("rtstruct.dcm", ImplicitVRLittleEndian),
])
def test_files_without_preamble_or_meta_read(name: str, syntax: str) -> None:
    header = read_header(real_file(name))
    assert header.file_meta.TransferSyntaxUID == syntax
    assert header.SOPClassUID


SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
            DeflatedExplicitVRLittleEndian, RLELossless, JPEG2000Lossless]


@pytest.mark.parametrize("syntax", SYNTAXES, ids=lambda s: s.name)
def test_transfer_syntaxes_give_one_volume(tmp_path: Path, syntax: str) -> None:
    shape = (32, 32, 4)  # JPEG 2000 needs at least 32 pixels a side
    write_series(tmp_path, shape=shape, transfer_syntax=syntax, shuffle=True, naming="random")
    volume = load_series(sorted(tmp_path.iterdir()))
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, default_pixels(shape) - 1024)


def test_signed_12_bit_is_sign_extended_like_pydicom(tmp_path: Path) -> None:
    shape = (8, 6, 3)
    stored = default_pixels(shape, seed=4)
    stored = np.clip(stored, -2048, 2047)
    raw = stored.astype(np.int16) & 0x0FFF  # 12-bit two's complement, high bits zero
    paths = write_series(tmp_path, shape=shape, pixels=raw.astype(np.int16), bits_stored=12,
                         rescale_intercept=0)
    volume = load_series(paths)
    for k, path in enumerate(paths):
        np.testing.assert_array_equal(volume.array[:, :, k], pydicom_values(path).T)
    np.testing.assert_array_equal(volume.array, stored)


def test_unsigned_high_bits_are_masked_like_pydicom(tmp_path: Path) -> None:
    shape = (8, 6, 3)
    pixels = default_pixels(shape, signed=False)
    pixels[0, 0, 0] = 0xF123  # garbage above BitsStored (12)
    paths = write_series(tmp_path, shape=shape, pixels=pixels, signed=False, bits_stored=12,
                         modality="MR", rescale_slope=None, rescale_intercept=None)
    volume = load_series(paths)
    assert volume.array[0, 0, 0] == 0x123
    for k, path in enumerate(paths):
        np.testing.assert_array_equal(volume.array[:, :, k], pydicom_values(path).T)


def test_ct_stays_int16_when_it_fits(tmp_path: Path) -> None:
    write_series(tmp_path, signed=False, bits_stored=12, rescale_intercept=-1024)
    volume = load_series(sorted(tmp_path.iterdir()))
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array,
                                  default_pixels((16, 12, 6), signed=False).astype(int) - 1024)


def test_ct_with_fractional_slope_is_float32(tmp_path: Path) -> None:
    write_series(tmp_path, rescale_slope=0.5, rescale_intercept=-1000)
    volume = load_series(sorted(tmp_path.iterdir()))
    assert volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.array, default_pixels((16, 12, 6)) * 0.5 - 1000)


def test_ct_overflowing_int16_is_float32(tmp_path: Path) -> None:
    pixels = default_pixels((16, 12, 6), signed=False)
    pixels[0, 0, 0] = 65000
    write_series(tmp_path, signed=False, pixels=pixels, rescale_intercept=100)
    volume = load_series(sorted(tmp_path.iterdir()))
    assert volume.array.dtype == np.float32
    assert volume.array[0, 0, 0] == 65100


def test_per_slice_rescale(tmp_path: Path) -> None:
    """PET-style: each slice has its own RescaleSlope."""
    def slope(k: int, ds: pydicom.Dataset) -> None:
        ds.RescaleSlope = str(0.25 * (k + 1))

    paths = write_series(tmp_path, modality="PT", rescale_intercept=0, edit=slope,
                         shuffle=True)
    volume = load_series(paths)
    expected = default_pixels((16, 12, 6)) * (0.25 * np.arange(1, 7))[None, None, :]
    np.testing.assert_allclose(volume.array, expected)


@pytest.mark.parametrize("per_frame", [False, True])
def test_enhanced_multiframe_matches_single_frame(tmp_path: Path, per_frame: bool) -> None:
    shape = (12, 10, 5)
    orientation = (0.8, 0.6, 0.0, -0.6, 0.8, 0.0)
    singles = write_series(tmp_path / "single", shape=shape, orientation=orientation)
    enhanced = write_enhanced(tmp_path / "enh" / "multi.dcm", shape=shape,
                              orientation=orientation, frame_order=[3, 0, 4, 2, 1],
                              orientation_per_frame=per_frame, measures_per_frame=per_frame)
    a, b = load_series(singles), load_series([enhanced])
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-9)
    assert b.array.dtype == np.int16


def test_enhanced_multiframe_compressed(tmp_path: Path) -> None:
    shape = (32, 32, 3)
    path = write_enhanced(tmp_path / "multi.dcm", shape=shape, modality="MR",
                          rescale_intercept=0, transfer_syntax=RLELossless, frame_order=[2, 0, 1])
    volume = load_series([path])
    np.testing.assert_array_equal(volume.array, default_pixels(shape).astype(np.float32))
