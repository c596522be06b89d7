"""Orientation and resampling against phantoms of known geometry (LPS, RAS, oblique, anisotropic).

A linear intensity ramp f(x) = g . x + c (x in RAS+ mm) is reproduced exactly by linear
interpolation, so after resampling every voxel must hold f at its own world position: any
flipped axis, swapped axis or LPS/RAS mix-up shows as a large error.
"""

from __future__ import annotations

import numpy as np
import pytest

from medseq.io.volume import Volume
from medseq.preprocess.orient import canonical_grid, closest_ras_axes, cube_grid, ras_spacing
from medseq.preprocess.resample import from_sitk, resample, resample_volume, to_sitk
from tests.preprocess.phantom import grid_affine, rigid

GRADIENT = np.array([1.5, -2.0, 3.0])


def ramp_volume(shape: tuple[int, int, int], affine: np.ndarray) -> Volume:
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    return Volume((world @ GRADIENT + 7.0).astype(np.float32), affine)


def world_of(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return index @ affine[:3, :3].T + affine[:3, 3]


CASES = {
    "ras": {"spacing": (2.0, 2.0, 2.0), "lps": False, "rotation_deg": (0, 0, 0)},
    "lps": {"spacing": (2.0, 2.0, 2.0), "lps": True, "rotation_deg": (0, 0, 0)},
    "anisotropic_lps": {"spacing": (0.8, 1.2, 5.0), "lps": True, "rotation_deg": (0, 0, 0)},
    "oblique": {"spacing": (1.5, 1.5, 3.0), "lps": False, "rotation_deg": (12, -8, 20)},
    "oblique_lps": {"spacing": (1.0, 2.0, 2.5), "lps": True, "rotation_deg": (-15, 5, 30)},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_resampling_to_canonical_grid_puts_every_value_at_its_world_position(case: str) -> None:
    settings = CASES[case]
    shape = (30, 26, 14)
    affine = grid_affine(shape, settings["spacing"], lps=settings["lps"],
                         rotation_deg=settings["rotation_deg"])
    source = ramp_volume(shape, affine)
    grid = canonical_grid(shape, affine, (2.0, 2.0, 2.0))

    # Canonical: RAS-aligned, positive diagonal, target spacing.
    assert np.allclose(grid.affine[:3, :3], np.diag([2.0, 2.0, 2.0]))
    out = resample_volume(source, grid, default=np.nan)
    world = world_of(grid.shape, grid.affine)
    expected = world @ GRADIENT + 7.0
    # Only points between source voxel centres: ITK holds edge values for the outer half voxel.
    index = (world - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    inside = np.all((index >= 0) & (index <= np.asarray(shape) - 1), axis=-1)
    assert np.isfinite(out[inside]).all()
    assert inside.mean() > (0.9 if case in ("ras", "lps", "anisotropic_lps") else 0.2)
    assert np.abs(out[inside] - expected[inside]).max() < 1e-3


def test_axis_aligned_grids_keep_their_extent_and_voxel_centres() -> None:
    shape = (20, 16, 9)
    affine = grid_affine(shape, (1.0, 1.0, 4.0), lps=True)
    grid = canonical_grid(shape, affine, (1.0, 1.0, 4.0))
    assert grid.shape == shape
    corners_in = np.sort(world_of(shape, affine).reshape(-1, 3), axis=0)
    corners_out = np.sort(world_of(grid.shape, grid.affine).reshape(-1, 3), axis=0)
    assert np.allclose(corners_in, corners_out)


def test_ras_spacing_follows_the_closest_axis() -> None:
    # i runs along S, j along R, k along A (a sagittal-ish acquisition).
    affine = np.array([[0, 0.7, 0, 0], [0, 0, 0.9, 0], [3.0, 0, 0, 0], [0, 0, 0, 1.0]])
    assert list(closest_ras_axes(affine)) == [2, 0, 1]
    assert ras_spacing(affine) == pytest.approx((0.7, 0.9, 3.0))


def test_resample_through_a_transform_reads_the_moved_position() -> None:
    shape = (24, 24, 24)
    affine = grid_affine(shape, (2.0, 2.0, 2.0), lps=True)
    source = ramp_volume(shape, affine)
    grid = cube_grid((3.0, -2.0, 1.0), size=8, spacing=1.5)
    motion = rigid((5, -3, 7), (4.0, -2.0, 3.0))
    out = resample_volume(source, grid, grid_to_source=motion, default=np.nan)
    points = world_of(grid.shape, grid.affine).reshape(-1, 3)
    moved = points @ motion[:3, :3].T + motion[:3, 3]
    assert np.allclose(out.reshape(-1), moved @ GRADIENT + 7.0, atol=1e-3)


def test_sitk_round_trip_keeps_array_and_affine() -> None:
    affine = grid_affine((5, 6, 7), (0.5, 1.0, 2.0), lps=True, rotation_deg=(10, 0, 5))
    array = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    back, back_affine = from_sitk(to_sitk(array, affine))
    assert np.array_equal(back, array)
    assert np.allclose(back_affine, affine)


def test_nearest_neighbour_keeps_labels_and_type() -> None:
    affine = grid_affine((10, 10, 10), (1.0, 1.0, 1.0))
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[3:6, 3:6, 3:6] = 2
    grid = canonical_grid((10, 10, 10), affine, (0.5, 0.5, 0.5))
    out = resample(to_sitk(labels, affine), grid, interpolation="nearest")
    assert out.dtype == np.uint8
    assert set(np.unique(out)) == {0, 2}
    assert np.count_nonzero(out) == pytest.approx(27 * 8, rel=0.35)
