"""Header-only geometry: slice order, affine, gantry tilt checked against the headers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseq.io.dicom import HEADER_TAGS, load_series, read_header, series_geometry
from tests.dicom_factory import default_pixels, write_series


def header_positions(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]:
    """LPS position of slice origin, row and column cosines, (dx, dy) straight from a file."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    ps = [float(v) for v in ds.PixelSpacing]
    return np.array(ds.ImagePositionPatient, dtype=float), iop[:3], iop[3:], (ps[1], ps[0])


def test_order_ignores_instance_numbers_and_names(tmp_path: Path) -> None:
    # Instance numbers run against position, names are random.
    paths = write_series(tmp_path, shape=(6, 5, 7), instance_numbers=[7, 6, 5, 4, 3, 2, 1],
                         naming="random", seed=2)
    headers = [read_header(p) for p in sorted(tmp_path.iterdir())]
    geometry = series_geometry(headers, name="s")
    ordered = [Path(headers[n].filename) for n in geometry.order]
    assert ordered == paths
    assert geometry.shape == (6, 5, 7)
    assert geometry.duplicates == ()
    assert geometry.tilt_degrees == 0.0


def test_normal_pointing_down_orders_along_it(tmp_path: Path) -> None:
    """With IOP (-1,0,0,0,1,0) the normal is -z: slice 0 is the highest z."""
    paths = write_series(tmp_path, shape=(6, 5, 4), orientation=(-1, 0, 0, 0, 1, 0))
    volume = load_series(list(reversed(paths)))
    # Slices were written along the normal, so paths[k] is slice k.
    for k, path in enumerate(paths):
        ipp, *_ = header_positions(path)
        np.testing.assert_allclose(volume.affine @ [0, 0, k, 1], [-ipp[0], -ipp[1], ipp[2], 1],
                                   atol=1e-9)
    assert volume.affine[2, 2] < 0


def test_single_slice_uses_slice_thickness(tmp_path: Path) -> None:
    paths = write_series(tmp_path, shape=(6, 5, 1), spacing=(0.5, 0.5, 3.0))
    volume = load_series(paths)
    assert volume.spacing == pytest.approx((0.5, 0.5, 3.0))


def test_header_tags_are_enough_for_geometry(tmp_path: Path) -> None:
    paths = write_series(tmp_path, shape=(6, 5, 4), shuffle=True)
    headers = [pydicom.dcmread(p, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
               for p in paths]
    geometry = series_geometry(headers, name="s")
    assert geometry.order == (0, 1, 2, 3)
    assert "PixelData" not in headers[0]


def test_read_header_is_headers_only(tmp_path: Path) -> None:
    paths = write_series(tmp_path, shape=(6, 5, 2), preamble=False, naming="none")
    ds = read_header(paths[0])
    assert "PixelData" not in ds
    assert ds.PatientID == "PAT001"
    assert ds.filename == str(paths[0])


@pytest.mark.parametrize(("tilt", "spacing"), [
    (30.0, (0.6, 0.5, 2.0)),    # 1 mm shift per slice = exactly 2 rows: values kept exactly
    (-17.0, (0.7, 0.6, 2.5)),   # fractional shift: values are linear interpolations
])
def test_gantry_tilt_voxels_sit_at_header_positions(tmp_path: Path, tilt: float,
                                                     spacing: tuple[float, float, float]
                                                     ) -> None:
    shape = (10, 24, 5)
    pixels = default_pixels(shape, signed=False)
    paths = write_series(tmp_path, shape=shape, spacing=spacing, tilt_degrees=tilt,
                         modality="MR", pixels=pixels, signed=False, rescale_slope=None,
                         rescale_intercept=None)
    volume = load_series(paths)
    assert volume.provenance.extra["gantry_tilt_degrees"] == pytest.approx(abs(tilt), abs=1e-3)
    direction = volume.direction
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-9)  # orthogonal grid
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    checked = 0
    for k, path in enumerate(paths):
        ipp, row, col, (dx, dy) = header_positions(path)
        voxels = np.stack([i.ravel(), j.ravel(), np.full(i.size, k), np.ones(i.size)])
        lps = (volume.affine @ voxels)[:3].T * [-1, -1, 1]
        # Where each voxel falls in the acquired (tilted) slice k, in that slice's pixel units.
        offset = lps - ipp
        assert np.max(np.abs(offset @ np.cross(row, col))) < 1e-3  # in the slice's plane
        u, v = offset @ row / dx, offset @ col / dy
        np.testing.assert_allclose(u, i.ravel(), atol=1e-6)
        inside = (v >= 0) & (v <= shape[1] - 1)
        lo = np.floor(v[inside]).astype(int)
        hi = np.minimum(lo + 1, shape[1] - 1)
        w = v[inside] - lo
        cols = i.ravel()[inside]
        expected = (1 - w) * pixels[cols, lo, k] + w * pixels[cols, hi, k]
        got = volume.array[cols, j.ravel()[inside], k]
        np.testing.assert_allclose(got, expected, atol=1e-3)
        checked += int(inside.sum())
    assert checked > shape[0] * shape[1] * shape[2] // 2


def test_untilted_series_reports_no_tilt(tmp_path: Path) -> None:
    paths = write_series(tmp_path, shape=(6, 5, 4))
    geometry = series_geometry([read_header(p) for p in paths], name="s")
    assert geometry.tilt_degrees == 0.0
    assert geometry.shear_pixels == (0.0, 0.0)
