"""The image grid a DICOM object is placed on, and the conversions DICOM coordinates need.

DICOM positions (ImagePositionPatient, ContourData) are LPS millimetres; a
:class:`~medseq.io.volume.Volume` affine maps voxel indices to RAS+. :func:`lps_to_voxels`
converts once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medseq.io.volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
"""Flip of the first two axes: LPS <-> RAS+ (its own inverse)."""
PLANE_TOLERANCE_MM = 0.01
"""Smallest tolerance for 'lies on an image plane'; the slice spacing's 1% when that is larger."""
PLANE_TOLERANCE_FRACTION = 0.01


@dataclass(frozen=True)
class ImageGrid:
    """Where an annotation must land: the image's voxel grid and DICOM identity.

    ``affine`` maps voxel ``(i, j, k)`` to RAS+ mm (the :class:`Volume` convention).
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    series_uid: str = ""
    frame_of_reference_uid: str = ""

    @classmethod
    def of_volume(cls, volume: Volume, *, frame_of_reference_uid: str = "") -> ImageGrid:
        """The grid of a loaded image (its series UID from the provenance)."""
        return cls(shape=volume.shape, affine=np.asarray(volume.affine, dtype=np.float64),
                   series_uid=volume.provenance.series_uid or "",
                   frame_of_reference_uid=frame_of_reference_uid)

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size (mm) along i, j, k."""
        return np.linalg.norm(np.asarray(self.affine, dtype=np.float64)[:3, :3], axis=0)

    def tolerance_mm(self, axis: int) -> float:
        """How far off an image plane along ``axis`` a position may be and still lie on it."""
        return max(PLANE_TOLERANCE_MM, PLANE_TOLERANCE_FRACTION * float(self.spacing[axis]))


def lps_to_voxels(points_lps: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Continuous voxel coordinates ``(N, 3)`` of LPS mm points ``(N, 3)`` on a RAS+ grid."""
    points = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3) @ LPS_TO_RAS
    inverse = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    return points @ inverse[:3, :3].T + inverse[:3, 3]


def voxels_to_lps(voxels: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """LPS mm positions ``(N, 3)`` of voxel coordinates ``(N, 3)`` on a RAS+ grid."""
    idx = np.asarray(voxels, dtype=np.float64).reshape(-1, 3)
    ras = idx @ np.asarray(affine, dtype=np.float64)[:3, :3].T + np.asarray(affine)[:3, 3]
    return ras @ LPS_TO_RAS


def plane_pixel_map(position_lps: np.ndarray, orientation: np.ndarray,
                    pixel_spacing: tuple[float, float], grid: ImageGrid
                    ) -> tuple[np.ndarray, np.ndarray] | None:
    """Map a DICOM image plane's pixels onto whole voxels of ``grid``.

    Args:
        position_lps: ImagePositionPatient of the plane (centre of pixel row 0, column 0).
        orientation: ImageOrientationPatient (row cosines, then column cosines).
        pixel_spacing: PixelSpacing (between rows, between columns) in mm.
        grid: the image grid.

    Returns:
        ``(linear, offset)``, integers with ``voxel = linear @ (column, row) + offset``, when
        every pixel centre of the plane is a voxel centre (within the grid's tolerance);
        ``None`` otherwise (another orientation, spacing or a position between planes).
    """
    position = np.asarray(position_lps, dtype=np.float64)
    iop = np.asarray(orientation, dtype=np.float64)
    row_step = iop[:3] * float(pixel_spacing[1])  # along a row: the next column
    col_step = iop[3:] * float(pixel_spacing[0])  # down a column: the next row
    points = np.stack([position, position + row_step, position + col_step])
    voxels = lps_to_voxels(points, grid.affine)
    linear = np.stack([voxels[1] - voxels[0], voxels[2] - voxels[0]], axis=1)
    offset = voxels[0]
    whole_linear = np.rint(linear)
    whole_offset = np.rint(offset)
    # A pixel step must be exactly one voxel step (a signed permutation column).
    if not all(np.count_nonzero(whole_linear[:, c]) == 1
               and np.abs(whole_linear[:, c]).sum() == 1 for c in range(2)):
        return None
    spacing = grid.spacing
    tol = np.array([grid.tolerance_mm(a) for a in range(3)])
    if np.any(np.abs(offset - whole_offset) * spacing > tol):
        return None
    drift = np.abs(linear - whole_linear).max(axis=1) * spacing * max(grid.shape)
    if np.any(drift > tol):  # a spacing error adds up over a row of hundreds of pixels
        return None
    return whole_linear.astype(np.int64), whole_offset.astype(np.int64)


def functional_group(item: Any, shared: Any, name: str) -> Any:
    """The first item of sequence ``name`` in a frame's functional groups, else the shared."""
    for holder in (item, shared):
        if holder is not None and name in holder and len(holder[name].value):
            return holder[name].value[0]
    return None
