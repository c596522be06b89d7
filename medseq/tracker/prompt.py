"""From a baseline lesion to a follow-up crop: propagation, crops and the prompt channel.

The cache's volumes ``tNN_image.nii`` / ``tNN_mask.nii`` are already resampled onto the
baseline's grid with the rigid transform ``preprocess`` found (``transform_to_baseline``:
x_baseline = M @ x_this). A baseline lesion at registered-frame point p is therefore expected
at the same p on every follow-up's registered volume: propagation in the cache frame is the
identity, and what is left is residual motion (registration error, breathing, the lesion's own
growth), which the network absorbs (it is trained with crop-centre jitter).
:func:`to_scanner_mm` carries p onto a follow-up's own scanner frame (M^-1 @ p), for reporting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np

from medseq.contracts.cache import TimepointRecord

Vector = Union[Sequence[float], np.ndarray]  # noqa: UP007 - a runtime alias
"""Three numbers: a sequence or an array."""

CHANNELS = ("follow_up", "prompt", "baseline", "baseline_mask")
"""Network input channels, in order."""


def to_scanner_mm(point_mm: np.ndarray, tp: TimepointRecord) -> np.ndarray:
    """A registered-frame point on timepoint ``tp``'s own scanner frame (RAS+ mm)."""
    matrix = np.asarray(tp.transform_to_baseline, dtype=np.float64)
    inverse = np.linalg.inv(matrix)
    return inverse[:3, :3] @ np.asarray(point_mm, dtype=np.float64) + inverse[:3, 3]


def mm_to_voxel(point_mm: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Continuous voxel index of a point on a grid."""
    inverse = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    return inverse[:3, :3] @ np.asarray(point_mm, dtype=np.float64) + inverse[:3, 3]


def crop(array: np.ndarray, centre: Vector, size: int, fill: float = 0.0) -> np.ndarray:
    """The ``size``^3 box of ``array`` centred on voxel ``centre`` (padded with ``fill``)."""
    out = np.full((size, size, size), fill, dtype=array.dtype)
    src, dst = [], []
    for c, n in zip(centre, array.shape, strict=True):
        start = int(c) - size // 2
        lo, hi = max(start, 0), min(start + size, n)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = array[tuple(src)]
    return out


def paste(target: np.ndarray, block: np.ndarray, centre: Vector) -> None:
    """Write a crop back into ``target`` where :func:`crop` took it (in place, OR for bools)."""
    size = block.shape[0]
    src, dst = [], []
    for c, n in zip(centre, target.shape, strict=True):
        start = int(c) - size // 2
        lo, hi = max(start, 0), min(start + size, n)
        if hi <= lo:
            return
        dst.append(slice(lo, hi))
        src.append(slice(lo - start, hi - start))
    if target.dtype == bool:
        target[tuple(dst)] |= block[tuple(src)]
    else:
        target[tuple(dst)] = block[tuple(src)]


def point_prompt(size: int, point: np.ndarray, spacing: Vector,
                 sigma_mm: float) -> np.ndarray:
    """exp(-d^2 / 2 sigma^2), d the distance in mm to ``point`` (crop voxel coordinates)."""
    return _gaussian(_distance_sq_to_point(size, point, spacing), sigma_mm)


def line_prompt(size: int, start: np.ndarray, end: np.ndarray, spacing: Vector,
                sigma_mm: float) -> np.ndarray:
    """The same encoding of the distance to a segment (a RECIST line) instead of a point."""
    grid = _grid_mm(size, spacing)
    a = np.asarray(start, dtype=np.float32) * np.asarray(spacing, dtype=np.float32)
    b = np.asarray(end, dtype=np.float32) * np.asarray(spacing, dtype=np.float32)
    ab = b - a
    denom = float(ab @ ab)
    t = np.clip(((grid - a) @ ab) / denom, 0.0, 1.0) if denom > 0 else np.zeros(grid.shape[:-1])
    nearest = a + t[..., None] * ab
    return _gaussian(((grid - nearest) ** 2).sum(axis=-1), sigma_mm)


def _grid_mm(size: int, spacing: Vector) -> np.ndarray:
    axes = [np.arange(size, dtype=np.float32) * np.float32(s) for s in spacing]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def _distance_sq_to_point(size: int, point: np.ndarray, spacing: Vector) -> np.ndarray:
    total = np.zeros((size, size, size), dtype=np.float32)
    for axis, s in enumerate(spacing):
        d = (np.arange(size, dtype=np.float32) - np.float32(point[axis])) * np.float32(s)
        shape = [1, 1, 1]
        shape[axis] = size
        total = total + (d**2).reshape(shape)
    return total


def _gaussian(distance_sq: np.ndarray, sigma_mm: float) -> np.ndarray:
    return np.exp(-distance_sq / np.float32(2 * sigma_mm**2)).astype(np.float32)
