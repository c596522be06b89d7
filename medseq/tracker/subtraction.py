"""New lesions by subtraction: what the follow-up shows and the registered baseline does not.

The baseline scan is carried onto the follow-up's grid by the rigid registration (trilinear)
and both are band-passed (a difference of Gaussians, ``BLOB_SIGMA`` minus ``SURROUND_SIGMA``
voxels in-plane, scaled by the slice spacing across slices), which keeps lesion-sized blobs and
drops the slow changes between two scans (enhancement, the window's offset). Their difference
is divided by the error a subtraction makes anyway: the noise of the band-passed difference
(robust SD inside the body) and, at an edge, ``EDGE_SHIFT_VOXELS`` times the baseline's
gradient (a sub-voxel misregistration of a sharp edge). The score is that ratio's maximum over
a component of voxels above ``CANDIDATE_SCORE``, inside the body, outside every tracked
follow-up lesion and every carried baseline lesion (each grown by ``EXPLAINED_VOXELS``), and
farther than radius + 10 mm from every baseline lesion's position (as :mod:`detect`).

A component must also look like a lesion where it is:

- **air around it** in the baseline (lung; at least ``AIR_SHARE`` of a ``AIR_WINDOW``-voxel
  box below ``AIR_HU``, and its surroundings too): tissue appeared (brighter than before), its
  brightest voxel is soft tissue (>= ``TISSUE_HU``), and the baseline had nothing denser than
  ``EMPTY_HU`` within a voxel of it (a pulmonary vessel resampled at another phase of the
  slice is not new);
- **soft tissue around it**: no voxel of it is gas or fat (all >= ``FAT_HU``), its mean is
  soft tissue (>= ``SOFT_MEAN_HU``) and it differs from its surroundings by at most
  ``MAX_SOFT_CONTRAST_HU`` (a tumour is never as dark as the bowel gas that moved in).

Only where the baseline was scanned (``covered``: a follow-up that reaches further than its
baseline proposes nothing beyond it), and only CT (the HU rules need the cache's CT window).
The threshold on the score is chosen on the training patients' follow-ups
(:func:`medseq.tracker.detect.choose_subtraction_threshold`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medseq.tracker.intensity import cache_value, units_per_hu

BLOB_SIGMA = 0.8
SURROUND_SIGMA = 2.5
EDGE_SHIFT_VOXELS = 0.3
CANDIDATE_SCORE = 3.0
EXPLAINED_VOXELS = 2
AIR_WINDOW = 15
AIR_SHARE = 0.5
AIR_HU = -175.0
TISSUE_HU = -75.0
EMPTY_HU = -190.0
FAT_HU = -100.0
SOFT_MEAN_HU = -50.0
MAX_SOFT_CONTRAST_HU = 80.0


@dataclass(frozen=True)
class Levels:
    """The rules' HU levels in a cache's units."""

    air: float
    tissue: float
    empty: float
    fat: float
    soft_mean: float
    max_soft_contrast: float

    @classmethod
    def for_cache(cls, preprocess_config: Mapping[str, Any]) -> Levels:
        def value(hu: float) -> float:
            return cache_value(preprocess_config, hu)

        return cls(air=value(AIR_HU), tissue=value(TISSUE_HU), empty=value(EMPTY_HU),
                   fat=value(FAT_HU), soft_mean=value(SOFT_MEAN_HU),
                   max_soft_contrast=MAX_SOFT_CONTRAST_HU * units_per_hu(preprocess_config))


def resample_to_view(array: np.ndarray, to_view: np.ndarray | None,
                     shape: Sequence[int], *, slab: int = 16) -> np.ndarray:
    """A registered-grid image on a view grid of ``shape`` (trilinear; the nearest value
    beyond the edge), ``slab`` planes of the first axis at a time so the sample coordinates
    of a full-resolution CT never exist at once. ``to_view`` None: the same grid."""
    from scipy import ndimage

    if to_view is None:
        return np.asarray(array, dtype=np.float32)
    source = np.asarray(array, dtype=np.float32)
    out = np.empty(tuple(shape), dtype=np.float32)
    for planes, points in _source_points(to_view, shape, slab):
        out[planes] = ndimage.map_coordinates(source, points, order=1, mode="nearest")
    return out


def _source_points(to_view: np.ndarray | None, shape: Sequence[int], slab: int
                   ) -> Iterator[tuple[slice, list[np.ndarray]]]:
    """Per slab of ``slab`` planes of a view grid: the planes and their registered-grid
    coordinates (one array per axis)."""
    back = np.eye(4) if to_view is None else np.linalg.inv(np.asarray(to_view,
                                                                        dtype=np.float64))
    j, k = np.meshgrid(np.arange(shape[1], dtype=np.float64),
                       np.arange(shape[2], dtype=np.float64), indexing="ij")
    for start in range(0, int(shape[0]), slab):
        i = np.arange(start, min(start + slab, int(shape[0])), dtype=np.float64)
        yield slice(start, start + len(i)), [
            back[a, 0] * i[:, None, None] + back[a, 1] * j + back[a, 2] * k + back[a, 3]
            for a in range(3)]


def covered(to_view: np.ndarray | None, source_shape: Sequence[int], shape: Sequence[int],
            spacing: np.ndarray, *, slab: int = 16) -> np.ndarray:
    """Voxels of a view grid of ``shape`` whose registered-grid position lies inside an array
    of ``source_shape`` by at least the surround's width (``SURROUND_SIGMA`` voxels in-plane,
    scaled by the slice spacing across slices): where the baseline was scanned. A follow-up
    that reaches further than its baseline has nothing to be compared with there."""
    ratio = float(spacing[2] / spacing[0]) if spacing[0] > 0 else 1.0
    margin = np.array([SURROUND_SIGMA, SURROUND_SIGMA, SURROUND_SIGMA / ratio])
    limit = np.asarray(source_shape, dtype=np.float64) - 1 - margin
    out = np.empty(tuple(shape), dtype=bool)
    for planes, points in _source_points(to_view, shape, slab):
        inside = np.ones(points[0].shape, dtype=bool)
        for a, value in enumerate(points):
            inside &= (value >= margin[a]) & (value <= limit[a])
        out[planes] = inside
    return out


def score_map(follow: np.ndarray, baseline: np.ndarray, body: np.ndarray,
              spacing: np.ndarray, *, inside: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(band-passed difference, score) on the follow-up's grid; ``baseline`` already on it.
    ``inside``: the body eroded by two voxels, when the caller has it."""
    from scipy import ndimage

    ratio = float(spacing[2] / spacing[0]) if spacing[0] > 0 else 1.0

    def band(x: np.ndarray) -> np.ndarray:
        return (ndimage.gaussian_filter(x, (BLOB_SIGMA, BLOB_SIGMA, BLOB_SIGMA / ratio))
                - ndimage.gaussian_filter(x, (SURROUND_SIGMA, SURROUND_SIGMA,
                                              SURROUND_SIGMA / ratio)))

    follow = follow.astype(np.float32, copy=False)
    baseline = baseline.astype(np.float32, copy=False)
    difference = band(follow) - band(baseline)
    smooth = ndimage.gaussian_filter(baseline, 0.5)
    gradient = np.sqrt(sum(np.square(ndimage.sobel(smooth, axis=a) / 8.0) for a in range(3)))
    if inside is None:
        inside = _inside(body)
    values = difference[inside] if inside.any() else difference.ravel()
    noise = 1.4826 * float(np.median(np.abs(values - np.median(values))))
    noise = max(noise, 1e-6)
    expected = np.sqrt(noise ** 2 + (EDGE_SHIFT_VOXELS * ndimage.maximum_filter(gradient, 3)) ** 2)
    return difference, (np.abs(difference) / expected).astype(np.float32)


def _inside(body: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_erosion(body, structure=np.ones((3, 3, 3)), iterations=2)


@dataclass(frozen=True)
class Blob:
    """A candidate: its mask inside a box of the follow-up's grid, and its score."""

    box: tuple[slice, ...]
    mask: np.ndarray
    score: float

    @property
    def voxels(self) -> int:
        return int(self.mask.sum())

    def centroid(self) -> np.ndarray:
        """Voxel coordinates on the follow-up's grid."""
        return np.argwhere(self.mask).mean(axis=0) + np.array([b.start for b in self.box])

    def full(self, shape: Sequence[int]) -> np.ndarray:
        out = np.zeros(tuple(shape), dtype=bool)
        out[self.box] = self.mask
        return out


def subtraction_candidates(follow: np.ndarray, baseline: np.ndarray, body: np.ndarray,
                           spacing: np.ndarray, explained: np.ndarray, levels: Levels
                           ) -> list[Blob]:
    """Every component that passes the rules, before the anchor test and the threshold;
    ``explained`` (follow-up grid): voxels a known lesion accounts for."""
    from scipy import ndimage

    inside = _inside(body)
    difference, score = score_map(follow, baseline, body, spacing, inside=inside)
    grown = ndimage.binary_dilation(explained, structure=np.ones((3, 3, 3)),
                                    iterations=EXPLAINED_VOXELS) if explained.any() else explained
    components, count = ndimage.label((score > CANDIDATE_SCORE) & inside & ~grown,
                                      structure=np.ones((3, 3, 3)))
    if not count:
        return []
    air = ndimage.uniform_filter((baseline < levels.air).astype(np.float32), AIR_WINDOW)
    out = []
    for j, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        pad = tuple(slice(max(b.start - 3, 0), b.stop + 3) for b in box)
        mask = components[pad] == j
        ring = (ndimage.binary_dilation(mask, structure=np.ones((3, 3, 3)), iterations=2)
                & ~mask & (components[pad] == 0))
        f, b = follow[pad].astype(np.float32), baseline[pad]
        peak = np.unravel_index(int(np.argmax(np.where(mask, score[pad], 0.0))), mask.shape)
        f_ring = float(np.median(f[ring])) if ring.any() else float(f[mask].mean())
        b_ring = float(np.median(b[ring])) if ring.any() else float(b[mask].mean())
        if air[pad][peak] >= AIR_SHARE and b_ring < levels.air:
            near = ndimage.binary_dilation(mask, structure=np.ones((3, 3, 3)))
            keep = (difference[pad][peak] > 0 and float(f[mask].max()) >= levels.tissue
                    and float(b[near].max()) <= levels.empty)
        else:
            keep = (float(f[mask].min()) >= levels.fat and float(f[mask].mean()) >= levels.soft_mean
                    and b_ring >= levels.fat
                    and abs(float(f[mask].mean()) - f_ring) <= levels.max_soft_contrast)
        if keep:
            out.append(Blob(pad, mask, float(score[pad][peak])))
    return out
