"""Polygons to voxels on one slice, by the even-odd rule.

A voxel is inside when its *centre* is inside: a ray from the centre along the second axis
crosses the slice's polygon edges an odd number of times. All contours of one ROI on one slice
are filled together, so a contour drawn inside another is a hole, a contour inside that hole
is filled again, and separate contours on one slice are separate islands. Edges are half-open
(an edge counts for a scan line when one end is at or below it and the other above), so a
centre exactly on an edge shared by two touching contours is claimed by one of them, never both,
and a centre exactly on the boundary is inside on the low side of the second axis and outside
on its high side.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fill_even_odd(polygons: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Boolean ``shape`` array of the voxel centres inside ``polygons`` (even-odd rule).

    Args:
        polygons: closed polygons, each ``(N, 2)`` continuous voxel coordinates ``(u, v)`` on
            the slice (the last vertex connects back to the first; a repeated first vertex is
            harmless).
        shape: the slice's size along ``u`` and ``v``.
    """
    inside = np.zeros(shape, dtype=bool)
    starts = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons]
    starts = [p for p in starts if len(p) >= 3]
    if not starts:
        return inside
    a = np.concatenate(starts)
    b = np.concatenate([np.roll(p, -1, axis=0) for p in starts])
    lo = max(0, int(np.ceil(min(a[:, 0].min(), b[:, 0].min()))))
    hi = min(shape[0] - 1, int(np.floor(max(a[:, 0].max(), b[:, 0].max()))))
    if hi < lo:
        return inside
    rows = np.arange(lo, hi + 1, dtype=np.float64)[:, None]  # (R, 1) scan lines u = const
    u0, v0, u1, v1 = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
    crosses = (u0 <= rows) != (u1 <= rows)  # (R, E): half-open, horizontal edges never cross
    with np.errstate(divide="ignore", invalid="ignore"):
        at = v0 + (rows - u0) * (v1 - v0) / (u1 - u0)  # v of the crossing on each scan line
    centres = np.arange(shape[1], dtype=np.float64)
    for r in range(rows.shape[0]):
        xs = np.sort(at[r, crosses[r]])
        if xs.size == 0:
            continue
        beyond = xs.size - np.searchsorted(xs, centres, side="right")  # crossings with v > centre
        inside[lo + r] = (beyond % 2) == 1
    return inside
