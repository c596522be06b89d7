"""From a cache's masks to what matching sees: lesions on the source grid, carried onto the
registered (baseline) grid.

Each timepoint's lesions are measured on the source mask's own grid (``mask_native``); their
component labels are carried into the registered baseline grid with the cache's rigid transform
(nearest neighbour, the operation that made the registered mask), kept sparse.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseq.contracts.cache import TimepointRecord
from medseq.errors import CacheError
from medseq.tracking.lesions import LesionSet, find_lesions
from medseq.tracking.match import Frame


def baseline_grid(cache_dir: Path,
                  baseline: TimepointRecord) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of the registered grid (the baseline's registered mask or image)."""
    from medseq.io.nifti import read_nifti_header

    for name in (baseline.mask, baseline.image, baseline.mask_native):
        if name:
            path = cache_dir / name
            if path.is_file():
                header = read_nifti_header(path)
                return header.shape, header.affine
    raise CacheError("baseline files named in manifest.json are missing", path=cache_dir)


def measure_timepoint(cache_dir: Path, tp: TimepointRecord,
                      min_volume_ml: float) -> tuple[LesionSet, np.ndarray]:
    """Lesions of one timepoint on its source grid, and its transform to the baseline frame."""
    from medseq.io.nifti import load_nifti, mask_labels

    if tp.mask_native:
        path = cache_dir / tp.mask_native
        transform = np.asarray(tp.transform_to_baseline, dtype=np.float64)
    else:
        # Older caches without the source mask: measure on the registered grid (already baseline).
        path = cache_dir / str(tp.mask)
        transform = np.eye(4)
    if not path.is_file():
        raise CacheError("mask named in manifest.json is missing (rerun preprocess)", path=path)
    volume = load_nifti(path)
    labels = mask_labels(volume.array, path=path)
    return find_lesions(labels, volume.affine, min_volume_ml=min_volume_ml), transform


def registered_frame(lesion_set: LesionSet, transform: np.ndarray,
                     grid_shape: tuple[int, ...], grid_affine: np.ndarray) -> Frame:
    """Carry component labels onto the registered grid (nearest neighbour) for overlap.

    Sampling runs lesion by lesion over each lesion's own box on the registered grid, and the
    result is kept sparse, so time and memory follow the lesions' size, not the scan's.
    """
    count = len(lesion_set.lesions)
    centroids = np.array([les.centroid_mm for les in lesion_set.lesions]).reshape(count, 3)
    centroids = centroids @ transform[:3, :3].T + transform[:3, 3]
    volumes = np.array([les.volume_ml for les in lesion_set.lesions], dtype=np.float64)
    # grid index -> baseline world -> this scan's world -> this scan's voxel index
    to_native = np.linalg.inv(lesion_set.affine) @ np.linalg.inv(transform) @ grid_affine
    to_grid = np.linalg.inv(to_native)
    components = lesion_set.components
    shape = np.array(components.shape)
    flat_parts: list[np.ndarray] = []
    label_parts: list[np.ndarray] = []
    for lesion in lesion_set.lesions:
        box = grid_box(lesion.box, to_grid, grid_shape)
        if box is None:
            continue
        idx = np.stack(np.meshgrid(*(np.arange(lo, hi) for lo, hi in box), indexing="ij"),
                       axis=-1).reshape(-1, 3)
        native = np.rint(idx @ to_native[:3, :3].T + to_native[:3, 3]).astype(np.int64)
        inside = np.all((native >= 0) & (native < shape), axis=1)
        hit = native[inside]
        mine = components[hit[:, 0], hit[:, 1], hit[:, 2]] == lesion.component
        flat_parts.append(np.ravel_multi_index(idx[inside][mine].T, grid_shape))
        label_parts.append(np.full(int(mine.sum()), lesion.component, dtype=np.int64))
    if flat_parts:
        flat = np.concatenate(flat_parts)
        labels = np.concatenate(label_parts)
        order = np.argsort(flat, kind="stable")
        flat, labels = flat[order], labels[order]
        # Boxes of neighbouring lesions overlap, but each grid voxel samples one native voxel,
        # so a voxel can only be claimed once; keep the first occurrence to be safe.
        keep = np.ones(flat.size, dtype=bool)
        keep[1:] = flat[1:] != flat[:-1]
        flat, labels = flat[keep], labels[keep]
    else:
        flat = np.zeros(0, dtype=np.int64)
        labels = np.zeros(0, dtype=np.int64)
    return Frame(voxels=flat, labels=labels, centroids_mm=centroids, volumes_ml=volumes)


def grid_box(native_box: tuple[tuple[int, int], ...], to_grid: np.ndarray,
             grid_shape: tuple[int, ...]) -> list[tuple[int, int]] | None:
    """Registered-grid index box covering a native voxel box (one voxel margin), or None."""
    lo = [start - 0.5 for start, _ in native_box]
    hi = [stop - 0.5 for _, stop in native_box]
    corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    points = corners @ to_grid.T
    start = np.maximum(np.floor(points[:, :3].min(axis=0)) - 1, 0).astype(int)
    stop = np.minimum(np.ceil(points[:, :3].max(axis=0)) + 2, grid_shape).astype(int)
    if np.any(stop <= start):
        return None
    return [(int(a), int(b)) for a, b in zip(start, stop, strict=True)]
