"""Rigid motions, scanner grids and the mapping between them.

Three frames are used. The *body frame* (mm, RAS+ axes, origin at the centre of the torso) holds
the anatomy. The *baseline world* is the body frame shifted by the couch position. Each scan has
its own *scan world* (the scanner's RAS+ frame for that session), reached from the baseline world
by the patient's rigid repositioning ``motion``. A :class:`Grid` places voxels in the scan world.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medseq.data.synthetic import portable


def rotation_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """3x3 rotation from Euler angles (degrees) about x, then y, then z."""
    radians = np.asarray(angles_deg, dtype=np.float64) * (np.pi / 180.0)
    (cx, cy, cz), (sx, sy, sz) = portable.cos(radians), portable.sin(radians)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return portable.matmul(portable.matmul(rz, ry), rx)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation (QR of a Gaussian matrix, sign-fixed)."""
    q = portable.orthonormal_columns(rng.standard_normal((3, 3)))
    if portable.det3(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def rigid(rotation: np.ndarray, translation: np.ndarray, *, centre: np.ndarray) -> np.ndarray:
    """4x4 matrix rotating about ``centre`` and then translating."""
    out = np.eye(4)
    out[:3, :3] = rotation
    out[:3, 3] = centre - portable.matmul(rotation, centre) + translation
    return out


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 matrix to an (N, 3) (or (3,)) array of points."""
    return portable.apply(matrix, points)


@dataclass(frozen=True)
class Grid:
    """A scan's voxel grid: ``shape`` and the 4x4 voxel -> scan-world RAS+ affine.

    The affine is axis-aligned (a diagonal 3x3 part up to signs), as axial CT reconstructions are.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along i, j, k in mm."""
        s = np.abs(np.diag(self.affine)[:3])
        return float(s[0]), float(s[1]), float(s[2])

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL."""
        sx, sy, sz = self.spacing
        return sx * sy * sz / 1000.0

    def axis_world(self, axis: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """World coordinate (along the same world axis) of voxel centres ``start:stop``."""
        stop = self.shape[axis] if stop is None else stop
        idx = np.arange(start, stop, dtype=np.float64)
        return self.affine[axis, axis] * idx + self.affine[axis, 3]

    def index_box(
        self, world_corners: np.ndarray, *, margin: int = 1
    ) -> tuple[slice, slice, slice] | None:
        """Voxel slices covering the bounding box of ``world_corners``; ``None`` when outside."""
        inv = portable.affine_inverse(self.affine)
        idx = apply(inv, world_corners)
        lo = np.floor(idx.min(axis=0)).astype(int) - margin
        hi = np.ceil(idx.max(axis=0)).astype(int) + margin + 1
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, np.asarray(self.shape))
        if np.any(hi <= lo):
            return None
        return slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1])), slice(
            int(lo[2]), int(hi[2])
        )


def box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The 8 corners of the axis-aligned box ``[lo, hi]`` as an (8, 3) array."""
    return np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])],
        dtype=np.float64,
    )


def axial_grid(
    *,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    centre: np.ndarray,
    lps: bool,
) -> Grid:
    """An axial grid centred on ``centre`` (scan-world RAS+ mm).

    ``lps=True`` gives the grid a DICOM series loads into (i along patient left, j along
    posterior: RAS+ affine diagonal ``(-sx, -sy, sz)``); otherwise a RAS+ grid.
    """
    signs = np.array([-1.0, -1.0, 1.0]) if lps else np.ones(3)
    extent = (np.asarray(shape, dtype=np.float64) - 1.0) * np.asarray(spacing)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(signs * np.asarray(spacing))
    affine[:3, 3] = np.asarray(centre, dtype=np.float64) - signs * extent / 2.0
    return Grid(shape=shape, affine=affine)
