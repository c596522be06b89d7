"""Axial slice windows around a tracked lesion at every timepoint, from the registered scans.

Registered images and masks share the baseline grid, so one point in the baseline frame picks
the same anatomy in every timepoint. Slices are shown the radiological way: anterior up, the
patient's right on the viewer's left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medseq.contracts.cache import TimepointRecord
from medseq.report.figures import LesionSlices

MIN_HALF_WIDTH_MM = 15.0
"""Smallest half-width of a window: small lesions still get some context."""
CT_WINDOW_HU = (-160.0, 240.0)
"""Soft-tissue window (width 400, level 40) for CT montages."""
LUNG_WINDOW_HU = (-1350.0, 150.0)
"""Lung window (width 1500, level -600), for lesions whose voxels lie below the soft-tissue one."""


def lesion_slices(
    cache_dir: Path,
    timepoints: Sequence[TimepointRecord],
    lesion_id: str,
    centres_mm: Mapping[int, tuple[float, float, float]],
    *,
    half_width_mm: float,
    modality: str = "CT",
    volumes: dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray]] | None = None,
) -> LesionSlices:
    """Windows around ``centres_mm`` (timepoint index -> baseline-frame point) at every timepoint.

    A timepoint without its own centre (the lesion vanished there) uses the nearest earlier one,
    so the window shows where the lesion was. ``volumes`` caches loaded arrays between lesions.
    """
    cache = volumes if volumes is not None else {}
    images: list[np.ndarray | None] = []
    masks: list[np.ndarray | None] = []
    aspect = 1.0
    last: tuple[float, float, float] | None = None
    first_known = next((centres_mm[tp.index] for tp in timepoints if tp.index in centres_mm), None)
    half = max(half_width_mm, MIN_HALF_WIDTH_MM)
    for tp in timepoints:
        centre = centres_mm.get(tp.index, last if last is not None else first_known)
        last = centre
        loaded = _load(cache_dir, tp, cache)
        if centre is None or loaded is None:
            images.append(None)
            masks.append(None)
            continue
        image, mask, affine = loaded
        cut = _axial_window(image, mask, affine, centre, half)
        if cut is None:
            images.append(None)
            masks.append(None)
            continue
        img, msk, aspect = cut
        images.append(img)
        masks.append(msk)
    window = _ct_window(images, masks) if modality.upper() == "CT" else None
    return LesionSlices(lesion_id=lesion_id, images=images, masks=masks, pixel_aspect=aspect,
                        window=window)


def _ct_window(images: Sequence[np.ndarray | None], masks: Sequence[np.ndarray | None]
               ) -> tuple[float, float]:
    """Soft-tissue window, or the lung window when the lesion itself is darker than it shows."""
    inside = [im[m] for im, m in zip(images, masks, strict=True)
              if im is not None and m is not None and m.any()]
    if inside and float(np.median(np.concatenate(inside))) < CT_WINDOW_HU[0]:
        return LUNG_WINDOW_HU
    return CT_WINDOW_HU


def _load(
    cache_dir: Path, tp: TimepointRecord,
    cache: dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray] | None:
    if tp.image in cache:
        return cache[tp.image]
    import nibabel as nib

    path = Path(cache_dir) / tp.image
    if not path.is_file():
        return None
    img = nib.as_closest_canonical(nib.load(str(path)))
    image = np.asanyarray(img.dataobj)
    mask = None
    if tp.mask and (Path(cache_dir) / tp.mask).is_file():
        mimg = nib.as_closest_canonical(nib.load(str(Path(cache_dir) / tp.mask)))
        mask = np.asanyarray(mimg.dataobj) > 0
        if mask.shape != image.shape:
            mask = None
    # Keep only the few most recent scans: a report over many patients must not hold them all.
    if len(cache) > 8:
        cache.pop(next(iter(cache)))
    cache[tp.image] = (image, mask, np.asarray(img.affine, dtype=np.float64))
    return cache[tp.image]


def _axial_window(
    image: np.ndarray, mask: np.ndarray | None, affine: np.ndarray,
    centre_mm: tuple[float, float, float], half_mm: float,
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The axial slice through ``centre_mm``, cut to +-``half_mm``, display-oriented."""
    ijk = np.linalg.inv(affine) @ np.array([*centre_mm, 1.0])
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    i, j, k = (round(float(v)) for v in ijk[:3])
    if not 0 <= k < image.shape[2]:
        return None
    ri = max(round(float(half_mm / spacing[0])), 1)
    rj = max(round(float(half_mm / spacing[1])), 1)
    i0, i1 = max(i - ri, 0), min(i + ri + 1, image.shape[0])
    j0, j1 = max(j - rj, 0), min(j + rj + 1, image.shape[1])
    if i1 <= i0 or j1 <= j0:
        return None
    img = np.asarray(image[i0:i1, j0:j1, k], dtype=np.float32)
    msk = (np.asarray(mask[i0:i1, j0:j1, k], dtype=bool) if mask is not None
           else np.zeros_like(img, dtype=bool))
    # Canonical RAS: rows of the display = -y (anterior up), columns = -x (patient right left).
    img = img.T[::-1, ::-1]
    msk = msk.T[::-1, ::-1]
    return np.ascontiguousarray(img), np.ascontiguousarray(msk), float(spacing[1] / spacing[0])
