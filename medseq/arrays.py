"""Small array helpers shared by stages that work on masks."""

from __future__ import annotations

import numpy as np


def nonzero_box(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The smallest box holding every non-zero voxel of a 3D array, or None when it is empty.

    Working inside this box keeps labelling and measuring proportional to the lesions, not to
    the whole scan.
    """
    bounds = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=others))
        if hit.size == 0:
            return None
        bounds.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return bounds[0], bounds[1], bounds[2]
