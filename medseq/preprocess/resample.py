"""Volumes to and from SimpleITK, and resampling onto a grid through a rigid transform.

medseq works in RAS+ (NIfTI convention) and ITK in LPS, so both conversions flip the first two
world axes here and nowhere else. Arrays are ``[i, j, k]`` in medseq and ``[k, j, i]`` in ITK.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import SimpleITK as sitk  # noqa: N813 - the name every ITK user knows

from medseq.io.volume import Volume
from medseq.preprocess.orient import Grid

FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])
"""RAS+ <-> LPS (its own inverse)."""

Interpolation = Literal["linear", "nearest"]
CHUNK_VOXELS = 16 * 2**20
"""Voxels per float32 slab when resampling large volumes (64 MiB)."""


def to_sitk(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """An ITK image (LPS geometry) holding ``array[i, j, k]`` with a voxel -> RAS+ ``affine``."""
    # A Fortran-ordered [i, j, k] array (as nibabel gives) transposes to C order without a copy.
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)))
    _set_geometry(image, np.asarray(affine, dtype=np.float64))
    return image


def from_sitk(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """``(array[i, j, k], voxel -> RAS+ affine)`` of an ITK image."""
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)
    affine[:3, 3] = image.GetOrigin()
    return array, FLIP @ affine


def sitk_transform(grid_to_source: np.ndarray) -> sitk.Transform:
    """An ITK transform (LPS) for a 4x4 RAS+ matrix mapping output points to source points."""
    lps = FLIP @ np.asarray(grid_to_source, dtype=np.float64) @ FLIP
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(lps[:3, :3].ravel().tolist())
    transform.SetTranslation(lps[:3, 3].tolist())
    return transform


def resample(source: sitk.Image, grid: Grid, *, grid_to_source: np.ndarray | None = None,
             interpolation: Interpolation = "linear", default: float = 0.0) -> np.ndarray:
    """Sample ``source`` at every voxel centre of ``grid``: a float32 (linear) array ``[i, j, k]``.

    ``grid_to_source`` maps a point of the grid's world (the baseline's RAS+) to the source's
    world; ``None`` means they are the same frame. Nearest-neighbour keeps the source type.
    """
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(n) for n in grid.shape])
    lps = FLIP @ grid.affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    resampler.SetOutputSpacing(spacing.tolist())
    resampler.SetOutputDirection((lps[:3, :3] / spacing).ravel().tolist())
    resampler.SetOutputOrigin(lps[:3, 3].tolist())
    resampler.SetDefaultPixelValue(float(default))
    if interpolation == "nearest":
        resampler.SetInterpolator(sitk.sitkNearestNeighbor)
        resampler.SetOutputPixelType(source.GetPixelID())
    else:
        resampler.SetInterpolator(sitk.sitkLinear)
        resampler.SetOutputPixelType(sitk.sitkFloat32)
    if grid_to_source is not None:
        resampler.SetTransform(sitk_transform(grid_to_source))
    return sitk.GetArrayFromImage(resampler.Execute(source)).transpose(2, 1, 0)


def resample_into(source: sitk.Image, grid: Grid, *, dtype: np.dtype | type,
                  grid_to_source: np.ndarray | None = None, default: float = 0.0,
                  chunk_voxels: int = CHUNK_VOXELS) -> np.ndarray:
    """Linear resampling straight into ``dtype`` (rounded), slab by slab along ``k``.

    Memory stays at the output array plus one float32 slab, however large the grid: a
    512x512x400 CT needs 200 MiB of int16 output instead of 400 MiB more of float32.
    """
    ni, nj, nk = grid.shape
    out = np.empty(grid.shape, dtype=dtype, order="F")
    step = max(1, chunk_voxels // max(1, ni * nj))
    for k0 in range(0, nk, step):
        k1 = min(nk, k0 + step)
        affine = grid.affine.copy()
        affine[:3, 3] = grid.affine[:3, :3] @ np.array([0.0, 0.0, k0]) + grid.affine[:3, 3]
        slab = resample(source, Grid(shape=(ni, nj, k1 - k0), affine=affine),
                        grid_to_source=grid_to_source, default=default)
        out[:, :, k0:k1] = round_to_dtype(slab, dtype)
    return out


def resample_volume(volume: Volume, grid: Grid, *, grid_to_source: np.ndarray | None = None,
                    interpolation: Interpolation = "linear", default: float = 0.0) -> np.ndarray:
    """:func:`resample` for a :class:`Volume` (converted to ITK once, here)."""
    return resample(to_sitk(volume.array, volume.affine), grid, grid_to_source=grid_to_source,
                    interpolation=interpolation, default=default)


def round_to_dtype(array: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """Round interpolated values back to an integer type (in place where possible), clipped."""
    target = np.dtype(dtype)
    if not np.issubdtype(target, np.integer):
        return array.astype(target, copy=False)
    info = np.iinfo(target)
    np.rint(array, out=array)
    np.clip(array, info.min, info.max, out=array)
    return array.astype(target)


def _set_geometry(image: sitk.Image, affine: np.ndarray) -> None:
    lps = FLIP @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin(lps[:3, 3].tolist())
