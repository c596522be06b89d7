"""The Volume record's geometry helpers."""

from __future__ import annotations

import numpy as np
import pytest

from medseq.io.volume import Volume


def _oblique_affine() -> np.ndarray:
    angle = np.deg2rad(30)
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.7, 0.8, 2.5])
    affine[:3, 3] = [-100.0, 20.0, 5.0]
    return affine


def test_spacing_origin_direction_and_voxel_volume() -> None:
    vol = Volume(np.zeros((4, 5, 6), np.int16), _oblique_affine())
    assert vol.spacing == pytest.approx((0.7, 0.8, 2.5))
    assert vol.origin == pytest.approx((-100.0, 20.0, 5.0))
    assert np.allclose(vol.direction.T @ vol.direction, np.eye(3))
    assert vol.voxel_volume_ml == pytest.approx(0.7 * 0.8 * 2.5 / 1000)
    assert vol.shape == (4, 5, 6)


def test_world_coordinates_match_affine() -> None:
    vol = Volume(np.zeros((4, 5, 6), np.float32), _oblique_affine())
    idx = np.array([[0, 0, 0], [3, 4, 5], [1, 2, 3]])
    expected = (vol.affine @ np.c_[idx, np.ones(3)].T).T[:, :3]
    assert np.allclose(vol.world_coordinates(idx), expected)


def test_rejects_non_3d_arrays_and_bad_affines() -> None:
    with pytest.raises(ValueError, match="3D"):
        Volume(np.zeros((4, 5)), np.eye(4))
    with pytest.raises(ValueError, match="4x4"):
        Volume(np.zeros((4, 5, 6)), np.eye(3))
