"""Canonical RAS geometry: the grid a patient's cached volumes are resampled onto.

Every cached volume of a patient lies on one grid, axis-aligned with RAS+ (``i`` grows towards
the patient's right, ``j`` anterior, ``k`` superior), at the target spacing, covering the
baseline scan. Whatever the source orientation (LPS DICOM, RAS NIfTI, oblique, anisotropic),
voxel ``(i, j, k)`` of the output sits at ``origin + spacing * (i, j, k)`` in RAS+ mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SNAP_MM = 1e-4
"""Extents within this of a whole number of voxels count as whole (float rounding of affines)."""


@dataclass(frozen=True)
class Grid:
    """A voxel grid: shape plus a 4x4 voxel -> RAS+ mm affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(norms[0]), float(norms[1]), float(norms[2])


def closest_ras_axes(affine: np.ndarray) -> np.ndarray:
    """For each voxel axis, the RAS axis (0, 1, 2) it runs closest to (a permutation)."""
    direction = np.abs(affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0))
    axes = np.full(3, -1)
    # Greedy on the largest cosine first, so oblique volumes still get a permutation.
    for flat in np.argsort(direction, axis=None)[::-1]:
        ras, voxel = divmod(int(flat), 3)
        if axes[voxel] < 0 and ras not in axes:
            axes[voxel] = ras
    return axes


def ras_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size along R, A and S: the spacing of the voxel axis closest to each."""
    spacing = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    out = np.zeros(3)
    for voxel_axis, ras_axis in enumerate(closest_ras_axes(np.asarray(affine, dtype=np.float64))):
        out[ras_axis] = spacing[voxel_axis]
    return float(out[0]), float(out[1]), float(out[2])


def voxel_corners(shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """RAS+ mm of the eight corner voxel centres, shape (8, 3)."""
    corners = np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)], dtype=np.float64)
    return corners @ affine[:3, :3].T + affine[:3, 3]


def canonical_grid(shape: Sequence[int], affine: np.ndarray,
                   spacing: Sequence[float]) -> Grid:
    """The RAS-aligned grid at ``spacing`` whose voxel centres span those of a volume.

    A volume already RAS-aligned at ``spacing`` gets its own voxel centres back; an oblique one
    gets the bounding box of its corners.
    """
    corners = voxel_corners(shape, np.asarray(affine, dtype=np.float64))
    low, high = corners.min(axis=0), corners.max(axis=0)
    step = np.asarray(spacing, dtype=np.float64)
    counts = np.floor((high - low) / step + SNAP_MM).astype(int) + 1
    grid_affine = np.diag([*step, 1.0])
    grid_affine[:3, 3] = low
    return Grid(shape=(int(counts[0]), int(counts[1]), int(counts[2])), affine=grid_affine)


def cube_grid(centre_mm: Sequence[float], *, size: int, spacing: float) -> Grid:
    """A RAS-aligned cube of ``size``^3 voxels of ``spacing`` mm centred on ``centre_mm``."""
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = np.asarray(centre_mm, dtype=np.float64) - spacing * (size - 1) / 2.0
    return Grid(shape=(size, size, size), affine=affine)
