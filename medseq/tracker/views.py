"""Where the tracker looks at a follow-up: on the scan's own grid, reached from the registered one.

The cache holds every timepoint resampled onto the baseline grid (``tNN_image.nii``, linear
interpolation) and, since ``image_native`` exists, the source image on its own grid. The
source masks (``mask_native``) are defined on that own grid: a voxel is lesion or not there,
and the image's partial volume at the lesion surface lines up with it. Resampling moves the
image by a fraction of a voxel that varies across the scan and blurs it, while the registered
mask is carried by nearest neighbour, so on the registered grid image and mask disagree by up
to half a voxel (measured: an oracle threshold on 10-30-voxel lesions reaches Dice 0.73 on the
own grid, 0.40 on the registered one; docs/track.md).

So a follow-up is segmented on its own grid (a :class:`View`), and the baseline lesion's crop
and mask, which live on the registered (= baseline) grid, are sampled onto the follow-up's crop
(linear interpolation: a soft prior). ``to_view`` maps a registered voxel index to the view's
voxel index: inv(own affine) @ inv(transform_to_baseline) @ registered affine. A cache without
the source image, or whose source grid has another spacing than the registered grid (per axis,
beyond ``SPACING_TOLERANCE``: the network was trained at the registered spacing), falls back to
the registered grid (``to_view`` the identity), as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseq.contracts.cache import PatientRecord
from medseq.preprocess.config import PreprocessConfig

SPACING_TOLERANCE = 0.15
"""Largest relative difference, per axis, between two grids' spacings taken as the same."""


@dataclass(frozen=True)
class View:
    """One timepoint on the grid the tracker segments it on."""

    image: np.ndarray
    """Normalised like the cache's crops (float16 or float32)."""
    affine: np.ndarray
    """Voxel -> scanner RAS+ mm of this grid."""
    to_view: np.ndarray
    """4x4: registered voxel index -> this grid's voxel index."""
    body: np.ndarray
    native: bool
    """True: the source image's own grid; False: the registered grid (older caches)."""

    @property
    def spacing(self) -> np.ndarray:
        return np.asarray(np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.image.shape)


def load_view(cache_dir: Path, record: PatientRecord, index: int, config: PreprocessConfig,
              *, native: bool = True) -> View:
    """Timepoint ``index`` (position in ``record.timepoints``) on its own grid when the cache
    keeps the source image (and ``native``), else on the registered grid."""
    from medseq.io.nifti import load_nifti
    from medseq.preprocess.normalize import IntensityRecord, normalize
    from medseq.tracker.annotations import body_mask

    tp = record.timepoints[index]
    grid = registered_affine(cache_dir, record)
    transform = np.asarray(tp.transform_to_baseline, dtype=np.float64)
    own = tp.image_native if native else None
    path = Path(cache_dir) / (own or tp.image)
    if own and not path.is_file():
        path, own = Path(cache_dir) / tp.image, None
    volume = load_nifti(path)
    affine = np.asarray(volume.affine, dtype=np.float64)
    if own and not same_spacing(affine, grid):
        # A network trained at the registered grid's spacing must not read another one
        # (a 1 mm source resampled to a 4 mm cache, an axis order of its own): stay there.
        return load_view(cache_dir, record, index, config, native=False)
    intensity = IntensityRecord.model_validate(tp.intensity or {"kind": "ct_window"})
    image = normalize(volume.array, intensity, config).astype(np.float16)
    if own:
        to_view = np.linalg.inv(affine) @ np.linalg.inv(transform) @ grid
    else:
        to_view = np.eye(4)
        affine = np.linalg.inv(transform) @ grid
    return View(image, affine, to_view, body_mask(volume.array), native=bool(own))


def same_spacing(affine: np.ndarray, grid: np.ndarray) -> bool:
    """Whether two grids have the same spacing axis by axis, within ``SPACING_TOLERANCE``."""
    own = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    registered = np.linalg.norm(np.asarray(grid)[:3, :3], axis=0)
    return bool(np.all(np.abs(own / registered - 1) <= SPACING_TOLERANCE))


def registered_affine(cache_dir: Path, record: PatientRecord) -> np.ndarray:
    """Voxel -> baseline scanner mm of the registered grid."""
    if record.grid_affine is not None:
        return np.asarray(record.grid_affine, dtype=np.float64)
    from medseq.io.nifti import read_nifti_header

    return np.asarray(read_nifti_header(Path(cache_dir) / record.timepoints[0].image).affine,
                      dtype=np.float64)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Homogeneous 4x4 ``matrix`` applied to points [..., 3]."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def sample_crop(array: np.ndarray, to_view: np.ndarray, centre: np.ndarray, size: int, *,
                order: int) -> np.ndarray:
    """The ``size``^3 crop of the view grid centred on view voxel ``centre`` (as
    :func:`medseq.tracker.prompt.crop` cuts it), sampled from registered-grid ``array``.

    ``order`` 1: trilinear, 0: nearest neighbour; outside the array: 0. With the identity
    ``to_view`` this equals ``crop(array, centre, size)``.
    """
    from scipy import ndimage

    start = np.asarray(centre, dtype=np.int64) - size // 2
    axes = [np.arange(size, dtype=np.float64) + s for s in start]
    view = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    points = apply(np.linalg.inv(to_view), view)
    lo = np.floor(points.min(axis=0)).astype(np.int64) - 1
    hi = np.ceil(points.max(axis=0)).astype(np.int64) + 2
    shape = np.asarray(array.shape)
    if np.any(hi <= 0) or np.any(lo >= shape):
        return np.zeros((size,) * 3, dtype=np.float32)
    lo_c, hi_c = np.maximum(lo, 0), np.minimum(hi, shape)
    block = np.asarray(array[tuple(slice(a, b) for a, b in zip(lo_c, hi_c, strict=True))],
                       dtype=np.float32)
    out = ndimage.map_coordinates(block, (points - lo_c).T, order=order, mode="constant",
                                  cval=0.0, prefilter=False)
    return out.reshape((size,) * 3).astype(np.float32)


def warp_labels(labels: np.ndarray, to_view: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A registered-grid label map carried onto a view grid of ``shape`` (nearest neighbour),
    computed only over the box the labels reach."""
    return _carry(labels, to_view, shape)


def labels_to_registered(labels: np.ndarray, to_view: np.ndarray,
                         shape: Sequence[int]) -> np.ndarray:
    """A view-grid label map carried onto the registered grid (nearest neighbour), the
    operation ``preprocess`` applies to a source mask."""
    return _carry(labels, np.linalg.inv(to_view), shape)


def _carry(labels: np.ndarray, forward: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``out[v] = labels[rint(inv(forward) @ v)]`` over the box of ``labels``' non-zero voxels
    carried by ``forward``."""
    out = np.zeros(tuple(shape), dtype=labels.dtype)
    where = np.argwhere(labels)
    if not len(where):
        return out
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    lo_src, hi_src = where.min(axis=0), where.max(axis=0)
    box = apply(forward, lo_src + corners * (hi_src - lo_src))
    lo = np.maximum(np.floor(box.min(axis=0)).astype(np.int64) - 1, 0)
    hi = np.minimum(np.ceil(box.max(axis=0)).astype(np.int64) + 2, np.asarray(shape))
    if np.any(hi <= lo):
        return out
    axes = [np.arange(a, b) for a, b in zip(lo, hi, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    source = np.rint(apply(np.linalg.inv(forward), grid)).astype(np.int64)
    inside = np.all((source >= 0) & (source < np.asarray(labels.shape)), axis=1)
    values = np.zeros(len(grid), dtype=labels.dtype)
    values[inside] = labels[tuple(source[inside].T)]
    out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = values.reshape(
        tuple(hi - lo))
    return out
