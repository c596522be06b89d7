"""The cache: ``CACHE/manifest.json`` and the per-patient commit records ``<id>/patient.json``.

``manifest.json`` is the only index of a cache, written by ``preprocess``; ``track``, ``train``,
``predict`` and ``report`` read it through :func:`read_manifest`; nothing else walks the cache
folder. ``patient.json`` (one :class:`PatientRecord`) commits a patient; ``preprocess`` folds
the records back into the manifest (:func:`write_patient_record`, :func:`read_patient_record`).

Shards (``preprocess --shard K/N``) never write the manifest: each writes its plan
``.shards/K-of-N.json`` (a :class:`ShardRecord`) and its patients' records, and the index is
derived from those (:func:`derive_manifest`): by ``preprocess --merge``, or by
:func:`read_manifest` whenever the records are newer than ``manifest.json``.
The format is documented in ``docs/architecture.md``; bump :data:`SCHEMA_VERSION` on any
incompatible change.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from medseq.contracts.document import (
    Document,
    Record,
    check_version,
    dump_document,
    read_document,
    validate,
)
from medseq.errors import CacheError
from medseq.io.atomic import write_text_atomic

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
RECORD_NAME = "patient.json"
SALT_NAME = "salt.key"
SHARDS_DIR = ".shards"
"""Folder of the shard plans (``K-of-N.json``) in a cache made by ``--shard`` runs."""
"""The pseudonymisation key, in the cache and copied into each run directory."""
REGENERATE = "rerun medseq preprocess into a new cache folder"

Matrix4 = list[list[float]]


class RegistrationRecord(Record):
    """How a follow-up was registered to the baseline (identity for the baseline itself)."""

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


class TimepointRecord(Record):
    """One preprocessed timepoint; paths are relative to the cache root."""

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
    image_native: str | None = None
    """The source image on its original voxel grid (the grid of ``mask_native`` and
    ``native_affine``), same dtype as ``image``; None in caches written before it existed."""
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


class TargetRecord(Record):
    """A lesion-centred crop location, fixed at baseline in the registered frame."""

    index: int
    centroid_mm: list[float]
    volume_ml: float


class PatientStatus(str, Enum):
    """Outcome of preprocessing one patient."""

    OK = "ok"
    FAILED = "failed"


class PatientRecord(Record):
    """One patient in the cache."""

    patient_id: str
    """Pseudonymous id (or the original id with ``--keep-ids``)."""
    status: PatientStatus = PatientStatus.OK
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


class CacheManifest(Document):
    """``CACHE/manifest.json``."""

    SCHEMA: ClassVar[int] = SCHEMA_VERSION
    OLDEST: ClassVar[int] = SCHEMA_VERSION
    REGENERATE: ClassVar[str] = REGENERATE

    schema_version: int = SCHEMA_VERSION
    medseq_version: str
    config: dict[str, Any]
    """The preprocessing settings as given (free-form: owned by ``medseq.preprocess.config``)."""
    config_hash: str
    fingerprint: dict[str, Any] = Field(default_factory=dict)
    """Cohort facts fixed at the first run, e.g. the target spacing and how it was chosen
    (free-form: owned by ``medseq.preprocess.runner``)."""
    pseudonymised: bool = True
    patients: dict[str, PatientRecord] = Field(default_factory=dict)

    def ok_patients(self) -> list[PatientRecord]:
        """Patients preprocessed successfully, in id order."""
        return [p for _, p in sorted(self.patients.items()) if p.status == PatientStatus.OK]


class ShardRecord(Document):
    """``CACHE/.shards/K-of-N.json``: what one shard was given, written when it starts and
    again (with ``finished``) when it ends."""

    SCHEMA: ClassVar[int] = SCHEMA_VERSION
    OLDEST: ClassVar[int] = SCHEMA_VERSION
    REGENERATE: ClassVar[str] = "rerun that shard"

    schema_version: int = SCHEMA_VERSION
    shard: list[int]
    """``[K, N]``, K 1-based."""
    medseq_version: str
    config: dict[str, Any]
    config_hash: str
    fingerprint: dict[str, Any] = Field(default_factory=dict)
    pseudonymised: bool = True
    cohort: list[str] = Field(default_factory=list)
    """Cache ids of every patient in the input (all shards): the merge names missing ones."""
    patients: list[str] = Field(default_factory=list)
    """Cache ids of this shard's patients."""
    started: float = 0.0
    """Epoch seconds; a patient record committed before it is not this run's."""
    finished: bool = False
    """False while running, or when the shard was killed or stopped early (``--fail-fast``)."""


def shard_record_path(cache_dir: Path, k: int, n: int) -> Path:
    return Path(cache_dir) / SHARDS_DIR / f"{k}-of-{n}.json"


def read_shard_records(cache_dir: Path) -> list[ShardRecord]:
    """Every shard plan of ``cache_dir``, by (N, K); a one-line CacheError for a bad one."""
    folder = Path(cache_dir) / SHARDS_DIR
    records = [read_document(path, ShardRecord) for path in sorted(folder.glob("*-of-*.json"))
               if not path.name.startswith(".")]
    return sorted(records, key=lambda r: (r.shard[1], r.shard[0]))


def committed_records(cache_dir: Path) -> list[PatientRecord]:
    """Every readable ``<id>/patient.json`` of the cache, in id order (torn ones are skipped:
    those patients are simply redone)."""
    records = []
    for path in sorted(Path(cache_dir).glob(f"*/{RECORD_NAME}")):
        try:
            records.append(read_patient_record(path))
        except CacheError:
            continue
    return records


def derive_manifest(cache_dir: Path) -> CacheManifest:
    """The index of a sharded cache, from its shard plans and patient records.

    Equal to the manifest one process would have written for the same cohort. Refuses
    (CacheError, exit code 2) plans made with different settings, naming the shards.
    """
    cache_dir = Path(cache_dir)
    plans = read_shard_records(cache_dir)
    if not plans:
        raise CacheError(f"no shard records in {SHARDS_DIR}/: not made by preprocess --shard",
                         path=cache_dir)
    settings = {_setting_key(p) for p in plans}
    if len(settings) > 1:
        by_key: dict[str, list[str]] = {}
        for plan in plans:
            by_key.setdefault(_setting_key(plan), []).append(_shard_name(plan))
        hashes = {key: next(p.config_hash for p in plans if _setting_key(p) == key)
                  for key in by_key}
        groups = "; ".join(f"{', '.join(names)} with config {_short(hashes[key])}"
                           for key, names in sorted(by_key.items(), key=lambda kv: kv[1]))
        what = ("configurations" if len(set(hashes.values())) > 1
                else "inputs (cohort, spacing or --keep-ids)")
        raise CacheError(f"shards were made with different {what} ({groups}); rerun them with "
                         "one configuration", path=cache_dir)
    plan = plans[0]
    patients = {r.patient_id: r for r in committed_records(cache_dir)}
    return CacheManifest(medseq_version=plan.medseq_version, config=plan.config,
                         config_hash=plan.config_hash, fingerprint=plan.fingerprint,
                         pseudonymised=plan.pseudonymised,
                         patients=dict(sorted(patients.items())))


def _setting_key(plan: ShardRecord) -> str:
    """Everything that must agree between shards of one cache, as one string."""
    from medseq.config import canonical_hash

    return canonical_hash({"config": plan.config_hash, "fingerprint": plan.fingerprint,
                           "pseudonymised": plan.pseudonymised, "n": plan.shard[1],
                           "cohort": plan.cohort}).removeprefix("sha256:")


def _short(config_hash: str) -> str:
    return config_hash.removeprefix("sha256:")[:12]


def _shard_name(plan: ShardRecord) -> str:
    return f"{plan.shard[0]}/{plan.shard[1]}"


def _stale(cache_dir: Path) -> bool:
    """Whether a sharded cache's records are newer than its manifest, or name other patients."""
    try:
        seen = (cache_dir / MANIFEST_NAME).stat().st_mtime_ns
        listed = set(json.loads((cache_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
                     .get("patients", {}))
    except (OSError, ValueError, AttributeError):
        return True
    newest, found = 0, set()
    for path in (cache_dir / SHARDS_DIR).glob("[!.]*.json"):
        newest = max(newest, path.stat().st_mtime_ns)
    for path in cache_dir.glob(f"*/{RECORD_NAME}"):
        newest = max(newest, path.stat().st_mtime_ns)
        found.add(path.parent.name)
    return newest > seen or found != listed


def read_manifest(cache_dir: Path) -> CacheManifest:
    """Load and validate ``cache_dir/manifest.json``; a one-line CacheError otherwise.

    In a cache made by shards the index is derived from the commit records when they are
    newer than ``manifest.json`` (or it is missing); nothing is written.
    """
    cache_dir = Path(cache_dir)
    if (cache_dir / SHARDS_DIR).is_dir() and _stale(cache_dir):
        return derive_manifest(cache_dir)
    return read_stored_manifest(cache_dir)


def read_stored_manifest(cache_dir: Path) -> CacheManifest:
    """``cache_dir/manifest.json`` as written (never derived); a one-line CacheError otherwise."""
    path = Path(cache_dir) / MANIFEST_NAME
    if not path.is_file():
        raise CacheError("no manifest.json: not a medseq cache (run medseq preprocess first)",
                         path=cache_dir)
    try:
        return read_document(path, CacheManifest)
    except CacheError as err:
        if err.reason.startswith("unreadable"):
            raise CacheError(f"unreadable manifest{err.reason.removeprefix('unreadable')}",
                             path=path) from None
        if err.reason.startswith("invalid "):
            raise CacheError(f"invalid manifest at {err.reason.removeprefix('invalid ')}",
                             path=path) from None
        raise


def write_manifest(cache_dir: Path, manifest: CacheManifest) -> Path:
    """Write ``manifest.json`` atomically (temporary file, then rename)."""
    path = Path(cache_dir) / MANIFEST_NAME
    manifest.schema_version = SCHEMA_VERSION
    manifest.patients = dict(sorted(manifest.patients.items()))  # one order, however made
    write_text_atomic(path, dump_document(manifest))
    return path


def write_patient_record(patient_dir: Path, record: PatientRecord) -> Path:
    """Commit ``record`` as ``patient_dir/patient.json`` (atomic, ``schema_version`` first)."""
    path = Path(patient_dir) / RECORD_NAME
    body = json.loads(record.model_dump_json())
    write_text_atomic(path, json.dumps({"schema_version": SCHEMA_VERSION, **body}, indent=2)
                      + "\n")
    return path


def read_patient_record(path: Path) -> PatientRecord:
    """Load one ``patient.json``; a one-line CacheError otherwise.

    A record without ``schema_version`` (written before records were versioned) has the
    version-1 shape and is read as such.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CacheError(f"unreadable patient record ({err})", path=path) from None
    if isinstance(data, dict):
        data.setdefault("schema_version", 1)
        check_version(CacheManifest, data, path=path)
        data.pop("schema_version")
    return validate(PatientRecord, data, path=path)
