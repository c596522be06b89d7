"""Build small preprocessing caches by hand: masks with known lesions on chosen grids.

Each timepoint has its own native grid (spacing, origin) and a rigid transform to the baseline
frame; lesions are drawn as axial discs (cylinders along S) given in baseline-frame millimetres,
so their true axial diameter is known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseq.contracts.cache import (
    CacheManifest,
    PatientRecord,
    TimepointRecord,
    write_manifest,
)
from medseq.io.nifti import save_nifti
from medseq.io.volume import Volume

SHAPE = (80, 80, 16)


@dataclass(frozen=True)
class Disc:
    """An axial disc: centre (baseline RAS mm), diameter (mm), height along S (mm)."""

    centre: tuple[float, float, float]
    diameter: float
    height: float = 8.0
    label: int = 1


@dataclass(frozen=True)
class Scan:
    """One timepoint: its lesions, native grid and position of the patient."""

    discs: tuple[Disc, ...]
    days: int
    spacing: tuple[float, float, float] = (1.0, 1.0, 2.0)
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Where the patient sits in this scan's world relative to the baseline frame."""
    has_mask: bool = True


@dataclass
class CacheBuilder:
    """Collects patients, then writes NIfTI files and ``manifest.json``."""

    root: Path
    patients: dict[str, list[Scan]] = field(default_factory=dict)

    def add(self, patient_id: str, *scans: Scan) -> None:
        self.patients[patient_id] = list(scans)

    def write(self) -> Path:
        records = {pid: self._patient(pid, scans) for pid, scans in self.patients.items()}
        manifest = CacheManifest(medseq_version="test", config={}, config_hash="sha256:0",
                                 patients=records)
        write_manifest(self.root, manifest)
        return self.root


    def _patient(self, pid: str, scans: list[Scan]) -> PatientRecord:
        folder = self.root / pid
        folder.mkdir(parents=True, exist_ok=True)
        records = []
        for index, scan in enumerate(scans):
            affine = _affine(scan.spacing, scan.shift_mm)
            to_baseline = np.eye(4)
            to_baseline[:3, 3] = -np.asarray(scan.shift_mm)
            name = f"t{index:02d}"
            grid = _affine((1.0, 1.0, 2.0), (0.0, 0.0, 0.0))  # the registered (baseline) grid
            save_nifti(Volume(np.zeros(SHAPE, dtype=np.int16), grid),
                       folder / f"{name}_image.nii")
            mask_rel = native_rel = None
            if scan.has_mask:
                mask = draw(scan.discs, affine, to_baseline)
                save_nifti(Volume(mask, affine), folder / f"{name}_mask_native.nii.gz")
                save_nifti(Volume((mask > 0).astype(np.uint8), grid),
                           folder / f"{name}_mask.nii")
                mask_rel, native_rel = f"{pid}/{name}_mask.nii", f"{pid}/{name}_mask_native.nii.gz"
            previous = scans[index - 1].days if index else 0
            records.append(TimepointRecord(
                index=index, days=scan.days, days_since_previous=scan.days - previous,
                file_count=1, content_hash="sha256:0", image=f"{pid}/{name}_image.nii",
                mask=mask_rel, mask_native=native_rel, native_affine=affine.tolist(),
                transform_to_baseline=to_baseline.tolist()))
        return PatientRecord(patient_id=pid, has_mask=any(s.has_mask for s in scans),
                             timepoints=records)


def _affine(spacing: tuple[float, float, float], shift: tuple[float, float, float]) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = np.array([-40.0, -40.0, -16.0]) + np.asarray(shift)
    return affine


def draw(discs: tuple[Disc, ...], affine: np.ndarray, to_baseline: np.ndarray,
         shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """Rasterise discs (baseline-frame mm) at voxel centres of an axis-aligned native grid."""
    # Diagonal affine and a pure translation: each baseline coordinate depends on one index.
    axes = [np.arange(n) * affine[a, a] + affine[a, 3] + to_baseline[a, 3]
            for a, n in enumerate(shape)]
    x, y, z = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    mask = np.zeros(shape, dtype=np.uint8)
    for disc in discs:
        cx, cy, cz = disc.centre
        inside = ((x - cx) ** 2 + (y - cy) ** 2 <= (disc.diameter / 2) ** 2) & (
            np.abs(z - cz) <= disc.height / 2)
        mask[inside] = disc.label
    return mask
