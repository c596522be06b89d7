"""Lesion components and measurements on hand-built masks with known sizes."""

from __future__ import annotations

import numpy as np
import pytest

from medseq.tracking.lesions import axial_axis, find_lesions, slice_thickness_mm


def _rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _affine(spacing: tuple[float, float, float], rotation: np.ndarray | None = None,
            origin: tuple[float, float, float] = (-40.0, 25.0, 100.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = (np.eye(3) if rotation is None else rotation) @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def _world(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    idx = np.stack(np.indices(shape), axis=-1).astype(float)
    return idx @ affine[:3, :3].T + affine[:3, 3]


def test_line_of_voxels_measures_its_extent() -> None:
    mask = np.zeros((30, 5, 3), dtype=np.uint8)
    mask[4:25, 2, 1] = 1  # 21 voxels along i
    (lesion,) = find_lesions(mask, _affine((0.8, 0.8, 5.0)), min_volume_ml=0).lesions
    assert lesion.longest_diameter_mm == pytest.approx(20 * 0.8 + 0.4)
    assert lesion.short_axis_mm == pytest.approx(0.4)
    assert lesion.axial_slice == 1


def test_volume_and_centroid_of_a_box() -> None:
    affine = _affine((0.5, 1.0, 2.0))
    mask = np.zeros((10, 10, 10), dtype=bool)
    mask[2:6, 3:8, 1:7] = True
    (lesion,) = find_lesions(mask, affine, min_volume_ml=0).lesions
    assert lesion.voxel_count == 120
    assert lesion.volume_ml == pytest.approx(0.12)
    centre = affine @ np.array([3.5, 5.0, 3.5, 1.0])
    assert lesion.centroid_mm == pytest.approx(tuple(centre[:3]))


def test_random_ellipses_within_one_voxel() -> None:
    """The half-voxel allowance keeps diameters within one voxel of the true ellipse axes.

    Only small, elongated ellipses (pointed tips, few voxel centres near them) can fall a little
    more than one voxel short.
    """
    rng = np.random.default_rng(7)
    ld_err, sa_err = [], []
    for _ in range(150):
        s = rng.uniform(0.6, 1.5)
        a = rng.uniform(4, 25)
        b = rng.uniform(0.4, 1.0) * a
        theta = rng.uniform(0, np.pi)
        n = int(2 * a / s) + 6
        off = rng.uniform(-0.5, 0.5, 2)
        ii, jj = np.meshgrid(np.arange(n) - n / 2 + off[0], np.arange(n) - n / 2 + off[1],
                             indexing="ij")
        x, y = ii * s, jj * s
        xr = np.cos(theta) * x + np.sin(theta) * y
        yr = -np.sin(theta) * x + np.cos(theta) * y
        mask = ((xr / a) ** 2 + (yr / b) ** 2 <= 1)[:, :, None]
        (lesion,) = find_lesions(mask, _affine((s, s, 3.0)), min_volume_ml=0).lesions
        ld_err.append((lesion.longest_diameter_mm - 2 * a) / s)
        sa_err.append((lesion.short_axis_mm - 2 * b) / s)
    assert np.mean(np.abs(ld_err) < 1.0) >= 0.98
    assert max(abs(e) for e in ld_err) < 1.25
    assert max(abs(e) for e in sa_err) < 1.0
    assert abs(float(np.mean(ld_err))) < 0.2


@pytest.mark.parametrize(
    ("spacing", "rotation"),
    [
        ((0.7, 1.2, 3.0), None),
        ((0.9, 0.9, 2.5), _rotation("z", 30.0)),
        ((0.8, 1.0, 2.0), _rotation("z", 25.0) @ _rotation("x", 12.0)),
    ],
)
def test_ellipsoid_on_anisotropic_and_oblique_grids(
    spacing: tuple[float, float, float], rotation: np.ndarray | None
) -> None:
    affine = _affine(spacing, rotation)
    shape = (64, 52, 24)
    world = _world(shape, affine)
    centre = affine[:3, :3] @ (np.array(shape) / 2 + 0.3) + affine[:3, 3]
    d = world - centre
    # Semi-axes 14 mm (R-L), 8 mm (A-P), 10 mm (S-I): the axial cross-section is 28 x 16 mm.
    mask = (d[..., 0] / 14) ** 2 + (d[..., 1] / 8) ** 2 + (d[..., 2] / 10) ** 2 <= 1
    (lesion,) = find_lesions(mask, affine, min_volume_ml=0).lesions
    in_plane = max(spacing[0], spacing[1])
    # The measured slice sits up to half a slice from the equator, which shrinks it a little.
    z_off = spacing[2] / 2
    shrink = np.sqrt(1 - (z_off / 10) ** 2)
    assert 28 * shrink - in_plane <= lesion.longest_diameter_mm <= 28 + in_plane
    assert 16 * shrink - in_plane <= lesion.short_axis_mm <= 16 + in_plane
    assert lesion.volume_ml == pytest.approx(4 / 3 * np.pi * 14 * 8 * 10 / 1000, rel=0.05)
    assert lesion.centroid_mm == pytest.approx(tuple(centre), abs=0.5)


def test_axial_plane_follows_the_affine_not_the_array_order() -> None:
    # Voxel axis 0 points superior: the axial plane is spanned by axes 1 and 2.
    rotation = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    affine = _affine((3.0, 0.8, 0.8), rotation)
    assert axial_axis(affine) == 0
    assert slice_thickness_mm(affine) == pytest.approx(3.0)
    world = _world((20, 40, 40), affine)
    centre = affine[:3, :3] @ np.array([10.0, 20.0, 20.0]) + affine[:3, 3]
    d = world - centre
    # A cylinder along S: 12 mm across axially, 45 mm long; the axial diameter is 12, not 45.
    mask = (np.hypot(d[..., 0], d[..., 1]) <= 6.0) & (np.abs(d[..., 2]) <= 22.5)
    (lesion,) = find_lesions(mask, affine, min_volume_ml=0).lesions
    assert lesion.longest_diameter_mm == pytest.approx(12.0, abs=0.8)
    assert lesion.short_axis_mm == pytest.approx(12.0, abs=0.8)


def test_26_connectivity_and_minimum_volume() -> None:
    mask = np.zeros((10, 10, 10), dtype=np.uint8)
    mask[1, 1, 1] = mask[2, 2, 2] = 1  # corner neighbours: one lesion
    mask[6:9, 6:9, 6:9] = 1  # 27 voxels
    affine = _affine((1.0, 1.0, 1.0))
    found = find_lesions(mask, affine, min_volume_ml=0).lesions
    assert [les.voxel_count for les in found] == [2, 27]
    kept = find_lesions(mask, affine, min_volume_ml=0.01)
    assert [les.voxel_count for les in kept.lesions] == [27]
    assert kept.lesions[0].component == 1
    assert set(np.unique(kept.components)) == {0, 1}


def test_integer_label_map_keeps_touching_lesions_apart() -> None:
    mask = np.zeros((12, 6, 3), dtype=np.uint8)
    mask[1:6, 1:5, 1] = 3
    mask[6:11, 1:5, 1] = 7  # touches label 3
    found = find_lesions(mask, _affine((1.0, 1.0, 1.0)), min_volume_ml=0).lesions
    assert sorted(les.label for les in found) == [3, 7]
    assert all(les.voxel_count == 20 for les in found)


def test_empty_mask_has_no_lesions() -> None:
    result = find_lesions(np.zeros((4, 4, 4), dtype=np.uint8), np.eye(4))
    assert result.lesions == ()
    assert not result.components.any()


def test_single_voxel_lesion_measures_half_a_voxel() -> None:
    mask = np.zeros((3, 3, 3), dtype=np.uint8)
    mask[1, 1, 1] = 1
    (lesion,) = find_lesions(mask, _affine((2.0, 2.0, 2.0)), min_volume_ml=0).lesions
    assert lesion.longest_diameter_mm == pytest.approx(1.0)
