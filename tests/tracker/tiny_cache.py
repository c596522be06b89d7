"""A tiny registered cache for tracker tests: a body in air, spherical lesions, every mask.

Volumes are already on the baseline grid (as ``preprocess`` writes them), so a lesion's
follow-up position is its baseline position plus ``shift`` voxels (simulated residual motion).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseq.contracts.cache import CacheManifest, PatientRecord, TimepointRecord, write_manifest
from medseq.io.nifti import save_nifti
from medseq.io.volume import Volume

SHAPE = (40, 40, 20)
SPACING = (4.0, 4.0, 5.0)
CONFIG = {"ct_window": [-200.0, 300.0], "ct_range": [0.0, 1.0], "crop_size": 32}


def grid_affine() -> np.ndarray:
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = [-78.0, -78.0, -47.5]
    return affine


def write_tiny_cache(root: Path, *, patients: int = 2, timepoints: int = 3, seed: int = 0,
                     follow_up_masks: bool = True,
                     native_offset: tuple[int, int, int] | None = None) -> Path:
    """Write ``patients`` patients with 2 lesions each (one grows, one shrinks); return root.

    ``native_offset``: each follow-up also keeps its source image (``image_native``, and its
    mask as ``mask_native``) on its own grid, whose voxel v is the registered grid's voxel
    v + offset (same scanner frame), as ``preprocess`` records a scan taken with another
    field of view.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij"), axis=-1)
    mm = idx * np.asarray(SPACING)
    centre = (np.asarray(SHAPE) - 1) / 2 * np.asarray(SPACING)
    body = (((mm[..., 0] - centre[0]) / 70) ** 2 + ((mm[..., 1] - centre[1]) / 55) ** 2) <= 1
    affine = grid_affine()
    records: dict[str, PatientRecord] = {}
    for p in range(patients):
        pid = f"P{p:03d}"
        (root / pid).mkdir(exist_ok=True)
        lesions = [(np.array([12.0, 20.0, 10.0]) + rng.integers(-2, 3, 3), 14.0, 1.15),
                   (np.array([27.0, 18.0, 9.0]) + rng.integers(-2, 3, 3), 11.0, 0.8)]
        tps = []
        for t in range(timepoints):
            shift = np.zeros(3) if t == 0 else rng.normal(0, 0.7, 3)
            image = np.where(body, 40.0, -1000.0) + rng.normal(0, 5, SHAPE)
            mask = np.zeros(SHAPE, dtype=np.uint8)
            for position, diameter, rate in lesions:
                radius = diameter / 2 * rate ** t
                d = np.linalg.norm((idx - position - shift) * np.asarray(SPACING), axis=-1)
                inside = d <= radius
                image[inside] = 110.0 + rng.normal(0, 5, int(inside.sum()))
                mask[inside] = 1
            name = f"t{t:02d}"
            save_nifti(Volume(image.astype(np.int16), affine), root / pid / f"{name}_image.nii")
            has_mask = t == 0 or follow_up_masks
            if has_mask:
                save_nifti(Volume(mask, affine), root / pid / f"{name}_mask.nii")
            native, native_mask = affine, f"{pid}/{name}_mask.nii"
            image_native = None
            if native_offset is not None and t > 0:
                native = affine.copy()
                native[:3, 3] += affine[:3, :3] @ np.asarray(native_offset, dtype=float)
                image_native = f"{pid}/{name}_image_native.nii.gz"
                save_nifti(Volume(shift_array(image.astype(np.int16), native_offset, -1000),
                                  native), root / image_native)
                native_mask = f"{pid}/{name}_mask_native.nii.gz"
                if has_mask:
                    save_nifti(Volume(shift_array(mask, native_offset, 0), native),
                               root / native_mask)
            tps.append(TimepointRecord(
                index=t, days=60 * t, days_since_previous=60 if t else 0, file_count=1,
                content_hash="sha256:0", image=f"{pid}/{name}_image.nii",
                mask=f"{pid}/{name}_mask.nii" if has_mask else None,
                mask_native=native_mask if has_mask else None, image_native=image_native,
                native_affine=native.tolist(), native_shape=list(SHAPE),
                intensity={"kind": "ct_window", "low": -200.0, "high": 300.0}))
        records[pid] = PatientRecord(patient_id=pid, has_mask=True, timepoints=tps,
                                     grid_shape=list(SHAPE), grid_affine=affine.tolist())
    manifest = CacheManifest(medseq_version="test", config=CONFIG, config_hash="sha256:tiny",
                             fingerprint={"target_spacing": list(SPACING)}, patients=records)
    write_manifest(root, manifest)
    return root


def shift_array(array: np.ndarray, offset: tuple[int, int, int], fill: float) -> np.ndarray:
    """``out[v] = array[v + offset]`` (``fill`` where v + offset leaves the array)."""
    out = np.full(array.shape, fill, dtype=array.dtype)
    src, dst = [], []
    for o, n in zip(offset, array.shape, strict=True):
        src.append(slice(max(o, 0), n + min(o, 0)))
        dst.append(slice(max(-o, 0), n - max(o, 0)))
    out[tuple(dst)] = array[tuple(src)]
    return out
