"""A small analytic CT phantom written as NIfTI cohorts for the preprocess tests.

The anatomy is defined in the baseline's RAS+ world (mm); a scan with motion ``M`` (baseline
world -> this scan's world, as the synthetic generator's ground truth) shows at its world point
``x`` the anatomy at ``M^-1 x``. So every expected position is known exactly.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Lesion:
    centre_mm: tuple[float, float, float]
    """Baseline RAS+ mm."""
    radius_mm: float


DEFAULT_LESIONS = (Lesion((20.0, 10.0, 5.0), 9.0), Lesion((-25.0, -5.0, -15.0), 6.0))


def rigid(angles_deg: Sequence[float] = (0, 0, 0), shift_mm: Sequence[float] = (0, 0, 0),
          centre: Sequence[float] = (0, 0, 0)) -> np.ndarray:
    """4x4 rotation about ``centre`` (x, then y, then z angles) followed by a shift."""
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    rotation = rz @ ry @ rx
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    c = np.asarray(centre, dtype=np.float64)
    matrix[:3, 3] = c - rotation @ c + np.asarray(shift_mm, dtype=np.float64)
    return matrix


def grid_affine(shape: Sequence[int], spacing: Sequence[float], *, lps: bool = False,
                rotation_deg: Sequence[float] = (0, 0, 0)) -> np.ndarray:
    """An affine whose grid is centred on the world origin: RAS or LPS axes, maybe oblique."""
    direction = rigid(rotation_deg)[:3, :3]
    if lps:
        direction = LPS_TO_RAS[:3, :3] @ direction
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(spacing, dtype=np.float64)
    centre_index = (np.asarray(shape, dtype=np.float64) - 1) / 2
    affine[:3, 3] = -affine[:3, :3] @ centre_index
    return affine


def anatomy(points: np.ndarray, lesions: Sequence[Lesion], scale: float = 1.0
            ) -> tuple[np.ndarray, np.ndarray]:
    """HU and lesion mask at baseline-world points (N, 3); lesions scaled by ``scale``."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    hu = np.full(len(points), -1000.0)
    body = (x / 75) ** 2 + (y / 55) ** 2 + (z / 80) ** 2 <= 1
    hu[body] = 30.0
    lung = ((x - 30) / 22) ** 2 + ((y - 5) / 25) ** 2 + ((z - 30) / 30) ** 2 <= 1
    hu[lung] = -800.0
    organ = ((x + 30) / 28) ** 2 + ((y + 10) / 20) ** 2 + ((z + 25) / 25) ** 2 <= 1
    hu[organ] = 70.0
    spine = ((x - 0) / 10) ** 2 + ((y + 40) / 10) ** 2 <= 1
    hu[spine & body] = 500.0
    mask = np.zeros(len(points), dtype=np.uint8)
    for lesion in lesions:
        inside = np.sum((points - np.asarray(lesion.centre_mm)) ** 2, axis=1) <= (
            lesion.radius_mm * scale) ** 2
        hu[inside] = 120.0
        mask[inside] = 1
    return hu, mask


def render(shape: Sequence[int], affine: np.ndarray, *, motion: np.ndarray | None = None,
           lesions: Sequence[Lesion] = DEFAULT_LESIONS, scale: float = 1.0
           ) -> tuple[np.ndarray, np.ndarray]:
    """(int16 HU image, uint8 mask) of the phantom on a grid, seen through ``motion``.

    Each voxel averages 2x2x2 sub-samples (partial volume, as a scanner gives), so moved
    phantoms are not aliased; the mask is the centre sample.
    """
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    index = index.reshape(-1, 3).astype(np.float64)
    inverse = np.linalg.inv(motion) if motion is not None else np.eye(4)
    to_anatomy = inverse @ affine
    hu = np.zeros(len(index))
    for offset in np.array(np.meshgrid(*[[-0.25, 0.25]] * 3, indexing="ij")).reshape(3, -1).T:
        world = (index + offset) @ to_anatomy[:3, :3].T + to_anatomy[:3, 3]
        hu += anatomy(world, lesions, scale)[0] / 8
    _, mask = anatomy(index @ to_anatomy[:3, :3].T + to_anatomy[:3, 3], lesions, scale)
    return np.rint(hu).reshape(shape).astype(np.int16), mask.reshape(shape)


def save(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)
    return path


@dataclass(frozen=True)
class ScanSpec:
    days: int
    motion: np.ndarray | None = None
    scale: float = 1.0
    mask: bool = True


def write_manifest_cohort(root: Path, patients: dict[str, Sequence[ScanSpec]], *,
                          shape: Sequence[int] = (48, 40, 40),
                          spacing: Sequence[float] = (4.0, 4.0, 5.0), lps: bool = False,
                          labels: dict[str, int] | None = None) -> Path:
    """A manifest-layout cohort of phantoms; returns the manifest CSV path."""
    affine = grid_affine(shape, spacing, lps=lps)
    rows = []
    start = dt.date(2020, 1, 1)
    for patient_id, scans in patients.items():
        for index, scan in enumerate(scans):
            image, mask = render(shape, affine, motion=scan.motion, scale=scan.scale)
            folder = root / patient_id / f"scan{index}"
            image_path = save(folder / "image.nii.gz", image, affine)
            mask_path = save(folder / "mask.nii.gz", mask, affine) if scan.mask else None
            row = {"patient_id": patient_id, "timepoint": f"scan{index}",
                   "date": (start + dt.timedelta(days=scan.days)).isoformat(),
                   "image": str(image_path.relative_to(root)),
                   "mask": str(mask_path.relative_to(root)) if mask_path else ""}
            if labels is not None:
                row["label"] = str(labels.get(patient_id, ""))
            rows.append(row)
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest
