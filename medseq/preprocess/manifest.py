"""The cache manifest: the contract between ``preprocess`` and every later stage.

``CACHE/manifest.json`` is the only index of a cache. ``track``, ``train``, ``predict`` and
``report`` read it through :func:`read_manifest`; nothing else walks the cache folder. The
format is documented in ``docs/architecture.md``; bump :data:`SCHEMA_VERSION` on any
incompatible change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medseq.config import first_validation_error
from medseq.errors import CacheError
from medseq.io.atomic import write_text_atomic

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
SALT_NAME = "salt.key"

Matrix4 = list[list[float]]


class RegistrationRecord(BaseModel):
    """How a follow-up was registered to the baseline (identity for the baseline itself)."""

    model_config = ConfigDict(extra="allow")

    method: str = "identity"
    metric: str | None = None
    initial_metric: float | None = None
    final_metric: float | None = None
    iterations: int | None = None
    ok: bool = True
    message: str = ""
    body_dice: float | None = None
    """Overlap of the body masks after registration (the failure check)."""
    initialization: str | None = None
    """``moments`` (body centroids) or ``geometry`` (image centres)."""


class TimepointRecord(BaseModel):
    """One preprocessed timepoint; paths are relative to the cache root."""

    model_config = ConfigDict(extra="allow")

    index: int
    days: int
    """Days from the baseline scan."""
    days_since_previous: int
    series_uid: str | None = None
    file_count: int
    content_hash: str
    image: str
    """Registered image on the baseline grid (canonical RAS, target spacing), HU for CT."""
    mask: str | None = None
    """Registered binary mask on the same grid (nearest neighbour)."""
    mask_native: str | None = None
    """The source mask on its original voxel grid, for measurements that must not see resampling."""
    native_affine: Matrix4 | None = None
    """Voxel -> RAS+ affine of the source image's original grid."""
    transform_to_baseline: Matrix4 = Field(
        default_factory=lambda: [[1.0 if i == j else 0.0 for j in range(4)] for i in range(4)]
    )
    """4x4 rigid M with x_baseline = M @ x_this (RAS+ mm, homogeneous)."""
    registration: RegistrationRecord = Field(default_factory=RegistrationRecord)
    lesion_volume_ml: float | None = None
    """Total lesion volume of the native mask (None without a mask)."""
    native_shape: list[int] | None = None
    """Shape of the source image's original grid (pairs with ``native_affine``)."""
    source_stat: str | None = None
    """Hash of the source files' paths, sizes and mtimes: unchanged means ``content_hash``
    can be reused without reading the bytes again."""
    mask_hash: str | None = None
    """SHA-256 of the source mask file's bytes."""
    mask_stat: str | None = None
    intensity: dict[str, Any] | None = None
    """How the crops of this timepoint were normalised (CT window, or MR body mean/std)."""


class TargetRecord(BaseModel):
    """A lesion-centred crop location, fixed at baseline in the registered frame."""

    model_config = ConfigDict(extra="allow")

    index: int
    centroid_mm: list[float]
    volume_ml: float


class PatientRecord(BaseModel):
    """One patient in the cache."""

    model_config = ConfigDict(extra="allow")

    patient_id: str
    """Pseudonymous id (or the original id with ``--keep-ids``)."""
    status: str = "ok"
    """``ok`` or ``failed``."""
    error: str | None = None
    input_hash: str = ""
    """Hash over the patient's inputs and the config: unchanged means up to date."""
    modality: str = "CT"
    label: int | None = None
    has_mask: bool = False
    timepoints: list[TimepointRecord] = Field(default_factory=list)
    targets: list[TargetRecord] = Field(default_factory=list)
    crops: str | None = None
    """float16 array [T, L, 2, S, S, S] (image, mask channels) or None without targets."""
    crop_shape: list[int] | None = None
    grid_shape: list[int] | None = None
    """Shape of the registered volumes (the baseline's canonical grid)."""
    grid_affine: Matrix4 | None = None
    """Voxel -> RAS+ affine of the registered volumes."""
    timings: dict[str, float] = Field(default_factory=dict)
    """Seconds per stage and ``committed_at`` (epoch seconds); not part of the content."""


class CacheManifest(BaseModel):
    """``CACHE/manifest.json``."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION
    medseq_version: str
    config: dict[str, Any]
    config_hash: str
    fingerprint: dict[str, Any] = Field(default_factory=dict)
    """Cohort facts fixed at the first run, e.g. the target spacing and how it was chosen."""
    pseudonymised: bool = True
    patients: dict[str, PatientRecord] = Field(default_factory=dict)

    def ok_patients(self) -> list[PatientRecord]:
        """Patients preprocessed successfully, in id order."""
        return [p for _, p in sorted(self.patients.items()) if p.status == "ok"]


def read_manifest(cache_dir: Path) -> CacheManifest:
    """Load and validate ``cache_dir/manifest.json``; a one-line CacheError otherwise."""
    path = Path(cache_dir) / MANIFEST_NAME
    if not path.is_file():
        raise CacheError("no manifest.json: not a medseq cache (run medseq preprocess first)",
                         path=cache_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CacheError(f"unreadable manifest ({err})", path=path) from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise CacheError(
            f"cache schema version {version}, this medseq reads {SCHEMA_VERSION}; rerun preprocess",
            path=path,
        )
    try:
        return CacheManifest.model_validate(data)
    except ValidationError as err:
        where, message = first_validation_error(err)
        raise CacheError(f"invalid manifest at {where}: {message}", path=path) from None


def write_manifest(cache_dir: Path, manifest: CacheManifest) -> Path:
    """Write ``manifest.json`` atomically (temporary file, then rename)."""
    path = Path(cache_dir) / MANIFEST_NAME
    write_text_atomic(path, manifest.model_dump_json(indent=2) + "\n")
    return path
