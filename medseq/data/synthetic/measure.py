"""Ground-truth lesion measurements on a rasterised mask, on the image's own voxel grid.

Definitions (``docs/sample-data.md`` repeats them; medseq's tracking uses the same ones):

- volume: voxel count x voxel volume;
- centroid: mean RAS+ position of the voxel centres;
- longest axial diameter: on each axial slice (constant k), the largest distance in mm between two
  voxel centres of the lesion; the maximum over slices, plus half an in-plane voxel (half the mean
  of the two in-plane spacings) because voxel centres lie inside the lesion's edge;
- short axis: on the slice of the longest diameter, the extent of the voxel centres along the
  in-plane direction perpendicular to the longest diameter, plus the same half voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medseq.data.synthetic import portable


@dataclass(frozen=True)
class Measurement:
    """What a lesion measures on one scan."""

    voxels: int
    volume_ml: float
    longest_diameter_mm: float
    short_axis_mm: float
    centroid_mm: tuple[float, float, float]


def measure(inside: np.ndarray, offset: tuple[int, int, int], affine: np.ndarray) -> Measurement:
    """Measure the lesion ``inside`` (boolean block starting at voxel ``offset``) on a grid.

    The grid's k axis must be the axial one (true for every grid the generator writes).
    """
    idx = np.argwhere(inside)
    voxels = int(idx.shape[0])
    voxel_ml = abs(portable.det3(affine[:3, :3])) / 1000.0
    world = portable.apply(affine, idx + np.asarray(offset))
    centroid = world.mean(axis=0)
    longest, short = axial_diameters(inside, affine)
    return Measurement(
        voxels=voxels,
        volume_ml=voxels * voxel_ml,
        longest_diameter_mm=longest,
        short_axis_mm=short,
        centroid_mm=(float(centroid[0]), float(centroid[1]), float(centroid[2])),
    )


def axial_diameters(inside: np.ndarray, affine: np.ndarray) -> tuple[float, float]:
    """Longest axial diameter and perpendicular short axis (mm) of a boolean block."""
    vi = affine[:3, 0]
    vj = affine[:3, 1]
    pad = 0.25 * (portable.norm(vi) + portable.norm(vj))
    best = (-1.0, 0.0)
    for k in range(inside.shape[2]):
        plane = inside[:, :, k]
        if not plane.any():
            continue
        pts = _row_extremes(plane)
        xy = pts[:, :1] * vi[:2] + pts[:, 1:] * vj[:2]
        diff = xy[:, None, :] - xy[None, :, :]
        d2 = diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1]
        a, b = np.unravel_index(int(np.argmax(d2)), d2.shape)
        longest = float(np.sqrt(d2[a, b]))
        if longest <= best[0]:
            continue
        if longest == 0.0:
            best = (0.0, 0.0)
            continue
        direction = (xy[b] - xy[a]) / longest
        normal = np.array([-direction[1], direction[0]])
        proj = xy[:, 0] * normal[0] + xy[:, 1] * normal[1]
        best = (longest, float(proj.max() - proj.min()))
    return best[0] + pad, best[1] + pad


def _row_extremes(plane: np.ndarray) -> np.ndarray:
    """First and last voxel of every row: they hold every vertex of the convex hull."""
    rows = np.flatnonzero(plane.any(axis=1))
    sub = plane[rows]
    first = np.argmax(sub, axis=1)
    last = sub.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1)
    return np.concatenate(
        [np.stack([rows, first], axis=1), np.stack([rows, last], axis=1)]
    ).astype(np.float64)
