"""The in-memory image record shared by every stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Provenance:
    """Where a volume came from, for manifests and error messages (never PHI)."""

    source: str
    """A path (file or folder) or a description of the origin."""
    kind: str = "unknown"
    """``dicom``, ``nifti`` or ``derived``."""
    series_uid: str | None = None
    file_count: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Volume:
    """A 3D image: ``array[i, j, k]`` plus a 4x4 affine from voxel indices to RAS+ mm.

    The affine follows the NIfTI / nibabel convention, so ``affine @ [i, j, k, 1]`` is the
    centre of voxel ``(i, j, k)`` in RAS+ millimetres. CT stays int16 (HU) until it is
    cropped; other images are float32.
    """

    array: np.ndarray
    affine: np.ndarray
    provenance: Provenance = field(default_factory=lambda: Provenance(source="memory"))

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume.array must be 3D, got shape {self.array.shape}")
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"Volume.affine must be 4x4, got {affine.shape}")
        object.__setattr__(self, "affine", affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        i, j, k = self.array.shape
        return int(i), int(j), int(k)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k (column norms of the affine)."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(norms[0]), float(norms[1]), float(norms[2])

    @property
    def origin(self) -> tuple[float, float, float]:
        """RAS+ position of voxel (0, 0, 0) in mm."""
        x, y, z = self.affine[:3, 3]
        return float(x), float(y), float(z)

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix of unit column vectors: the RAS+ direction of each voxel axis."""
        return self.affine[:3, :3] / np.asarray(self.spacing)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres."""
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    def world_coordinates(self, indices: np.ndarray) -> np.ndarray:
        """RAS+ mm positions of an (N, 3) array of voxel indices."""
        idx = np.asarray(indices, dtype=np.float64)
        return idx @ self.affine[:3, :3].T + self.affine[:3, 3]

    def as_float32(self) -> np.ndarray:
        """The voxels as float32 (a copy unless already float32)."""
        return self.array.astype(np.float32, copy=False)

    def with_array(self, array: np.ndarray) -> Volume:
        """Same geometry and provenance, new voxels."""
        return Volume(array=array, affine=self.affine, provenance=self.provenance)
