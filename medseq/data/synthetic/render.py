"""Render one scan: anatomy and lesions in the scan's own frame, partial volume, scanner noise.

Work proceeds in slabs of slices so a ``large`` scan (512 x 512 x 240) stays within a few hundred
MB of temporaries.
"""

from __future__ import annotations

import functools

import numpy as np

from medseq.data.synthetic import portable
from medseq.data.synthetic.coords import BodyCoords
from medseq.data.synthetic.lesions import paint_lesion
from medseq.data.synthetic.phantom import paint_anatomy
from medseq.data.synthetic.plan import PatientPlan
from medseq.data.synthetic.truth import ScanTruth

SLAB_VOXELS = 4_000_000
"""Voxels per slab: bounds the float32 temporaries."""
NOISE_CORRELATION_VOXELS = 0.7
"""In-plane Gaussian correlation of the noise (reconstruction kernels smooth it)."""
HU_MIN, HU_MAX = -1024, 3071


def render_scan(plan: PatientPlan, t: int, truth: ScanTruth, *, seed: int) -> np.ndarray:
    """The scan ``t`` of ``plan`` in HU, int16, on its grid (``array[i, j, k]``)."""
    scan = plan.scans[t]
    grid = scan.grid
    sx, sy, sz = grid.spacing
    width = (sx + sy + sz) / 3.0
    body_to_world = plan.body_to_world(t)
    nx, ny, nz = grid.shape
    out = np.empty(grid.shape, dtype=np.int16)
    step = max(1, SLAB_VOXELS // (nx * ny))
    present = {les.plan.lesion_id for les in truth.lesions}
    for k0 in range(0, nz, step):
        k1 = min(nz, k0 + step)
        coords = BodyCoords(grid, body_to_world, (slice(0, nx), slice(0, ny), slice(k0, k1)))
        hu = np.empty(coords.shape, dtype=np.float32)
        paint_anatomy(
            plan.anatomy, coords, hu, width=width, enhancement=scan.enhancement,
            bowel_gas=list(scan.bowel_gas),
        )
        for lesion in plan.lesions:
            if lesion.lesion_id not in present:
                continue
            volume = lesion.course.volumes_ml[t]
            paint_lesion(
                lesion.shape, lesion.shape.scale_for(volume), lesion.course.looks[t], coords, hu,
                width=width,
            )
        rng = np.random.default_rng(np.random.SeedSequence([seed, plan.index, 3, t, k0]))
        hu += _noise(rng, hu.shape, plan.size.noise_hu)
        np.clip(np.rint(hu, out=hu), HU_MIN, HU_MAX, out=hu)
        out[:, :, k0:k1] = hu
    # Scanners reconstruct a disc; pixels outside it hold the padding value.
    out[~_reconstruction_disc(nx, ny)] = HU_MIN  # boolean over (i, j), all slices
    return out


def _reconstruction_disc(nx: int, ny: int) -> np.ndarray:
    """In-plane pixels inside the circle inscribed in the field of view."""
    i = (np.arange(nx) - (nx - 1) / 2.0) / (nx / 2.0)
    j = (np.arange(ny) - (ny - 1) / 2.0) / (ny / 2.0)
    return np.asarray(np.square(i)[:, None] + np.square(j)[None, :] <= 1.0)


def _noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    noise = rng.standard_normal(shape, dtype=np.float32)
    for axis in (0, 1):
        noise = portable.gaussian_smooth(noise, NOISE_CORRELATION_VOXELS, axis, truncate=3.0)
    noise *= np.float32(sigma / _filtered_sd())
    return noise


@functools.cache
def _filtered_sd() -> float:
    """Standard deviation left after the in-plane smoothing of unit white noise."""
    kernel = portable.gaussian_kernel(NOISE_CORRELATION_VOXELS, truncate=3.0)
    return float(np.sum(kernel * kernel))
