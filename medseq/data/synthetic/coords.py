"""Body-frame coordinates of a block of a scan's voxels, and the sub-blocks shapes occupy."""

from __future__ import annotations

import numpy as np

from medseq.data.synthetic import portable
from medseq.data.synthetic.geometry import Grid, apply, box_corners


class BodyCoords:
    """Body-frame coordinates (float32 mm) of the voxel centres in a box of a grid.

    Args:
        grid: the scan's voxel grid.
        body_to_world: 4x4 map from body frame to this scan's world (couch offset + motion).
        box: the voxel slices (steps of 1) to cover; by default the whole grid.
    """

    def __init__(
        self,
        grid: Grid,
        body_to_world: np.ndarray,
        box: tuple[slice, slice, slice] | None = None,
    ) -> None:
        if box is None:
            box = (slice(0, grid.shape[0]), slice(0, grid.shape[1]), slice(0, grid.shape[2]))
        self.grid = grid
        self.box = box
        self.start = tuple(int(s.start) for s in box)
        self.stop = tuple(int(s.stop) for s in box)
        self.body_to_world = body_to_world
        to_body = portable.affine_inverse(body_to_world)
        w = [
            grid.axis_world(a, self.start[a], self.stop[a]).astype(np.float32) for a in range(3)
        ]
        self.world_x, self.world_y = w[0], w[1]
        rot = to_body[:3, :3].astype(np.float32)
        off = to_body[:3, 3].astype(np.float32)
        # Each body axis is a broadcast sum of three 1D terms (the grid is axis-aligned).
        self.x, self.y, self.z = (
            rot[a, 0] * w[0][:, None, None] + rot[a, 1] * w[1][None, :, None]
            + rot[a, 2] * w[2][None, None, :] + off[a]
            for a in range(3)
        )
        self.shape = tuple(b - a for a, b in zip(self.start, self.stop, strict=True))
        first = np.array([float(w[a][0]) for a in range(3)])
        last = np.array([float(w[a][-1]) for a in range(3)])
        corners = box_corners(first, last)
        body = apply(to_body, corners)
        # Body-frame extent of the block: clamps open-ended boxes (a rotated, infinitely tall
        # box would otherwise cover the whole grid).
        self.body_lo = body.min(axis=0) - 1.0
        self.body_hi = body.max(axis=0) + 1.0

    @classmethod
    def covering(
        cls,
        grid: Grid,
        body_to_world: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        *,
        margin: int = 1,
    ) -> BodyCoords | None:
        """Coordinates of just the voxels around the body-frame box ``[lo, hi]``."""
        world = apply(body_to_world, box_corners(np.asarray(lo), np.asarray(hi)))
        box = grid.index_box(world, margin=margin)
        return None if box is None else cls(grid, body_to_world, box)

    def region(
        self, lo: np.ndarray, hi: np.ndarray, *, margin: int = 2
    ) -> tuple[slice, slice, slice] | None:
        """Slices (relative to this block) covering the body-frame box ``[lo, hi]``."""
        lo = np.maximum(np.asarray(lo, dtype=np.float64), self.body_lo)
        hi = np.minimum(np.asarray(hi, dtype=np.float64), self.body_hi)
        if np.any(hi < lo):
            return None
        world = apply(self.body_to_world, box_corners(lo, hi))
        box = self.grid.index_box(world, margin=margin)
        if box is None:
            return None
        out = []
        for a in range(3):
            start = max(box[a].start, self.start[a])
            stop = min(box[a].stop, self.stop[a])
            if stop <= start:
                return None
            out.append(slice(start - self.start[a], stop - self.start[a]))
        return out[0], out[1], out[2]

    def take(self, box: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Body coordinates of the voxels in ``box`` (views, no copies)."""
        return self.x[box], self.y[box], self.z[box]


def occupancy(distance: np.ndarray, width: float) -> np.ndarray:
    """Partial-volume fraction from an (approximate) signed distance in mm.

    A linear ramp of ``width`` mm across the surface: what a voxel of that size straddling the
    boundary would average to.
    """
    return np.clip(0.5 - distance / np.float32(width), 0.0, 1.0)


def paint(hu: np.ndarray, occ: np.ndarray, value: np.ndarray | np.floating | float) -> None:
    """Composite ``value`` over ``hu`` in place with partial-volume fraction ``occ``."""
    hu += occ * (value - hu)
