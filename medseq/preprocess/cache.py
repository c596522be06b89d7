"""The content-keyed cache: input hashes, per-patient commits and the shared manifest.

A patient is committed by writing ``CACHE/<id>/patient.json`` (its :class:`PatientRecord`)
after all of its files are in place; ``manifest.json`` is the index of those records. Every
file is written under a temporary name and renamed, so a kill leaves either the old file or the
new one. A run without ``--shard`` updates the manifest after each patient (under ``flock`` on
``CACHE/.manifest.lock``), and starts by folding the ``patient.json`` records into it, which
repairs an index left behind by a kill. Shards (``--shard K/N`` job arrays) never write the
manifest: they commit patient records only, and the index is derived from those
(:mod:`medseq.preprocess.shards`), so their correctness does not depend on file locks. Which
runs may write a cache at once is decided by :mod:`medseq.io.writer_lock`;
:func:`remove_abandoned` and :func:`clear_stale` delete only temporary files no live writer owns.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from medseq import __version__
from medseq.config import canonical_hash
from medseq.contracts.cache import (
    MANIFEST_NAME,
    RECORD_NAME,
    SCHEMA_VERSION,
    CacheManifest,
    PatientRecord,
    committed_records,
    read_manifest,
    read_stored_manifest,
    write_manifest,
    write_patient_record,
)
from medseq.errors import CacheError
from medseq.io.atomic import (
    is_abandoned_temporary,
    remove_abandoned_temporaries,
)
from medseq.io.cohort import ImageFormat, SeriesInfo

LOCK_NAME = ".manifest.lock"
CHUNK = 1 << 20
_OUTPUT = re.compile(
    r"^(t\d{2,}_(image\.nii|image_native\.nii\.gz|mask\.nii|mask_native\.nii\.gz)|crops\.npy)$")


def content_hash(series: SeriesInfo, *, root: Path, previous: tuple[str, str] | None = None
                 ) -> tuple[str, str]:
    """``(content hash, stat key)`` of a timepoint's source image.

    NIfTI: SHA-256 of the file's bytes. DICOM: SHA-256 over each file's path (relative to the
    input root), size and modification time plus the series UID -- reading every byte of a
    DICOM tree would cost more than preprocessing it. ``previous`` is the pair recorded last
    time; when the stat key (path, size, mtime) is unchanged its hash is reused unread.
    """
    stat_key = stat_hash(series.files, root=root, extra=series.series_uid or "")
    if previous is not None and previous[1] == stat_key:
        return previous[0], stat_key
    if series.format == ImageFormat.NIFTI:
        return bytes_hash(series.files[0]), stat_key
    return "stat-" + stat_key, stat_key


def file_hash(path: Path, *, root: Path, previous: tuple[str, str] | None = None
              ) -> tuple[str, str]:
    """``(SHA-256 of the bytes, stat key)`` of one file (a mask), reusing ``previous`` if fresh."""
    stat_key = stat_hash([path], root=root)
    if previous is not None and previous[1] == stat_key:
        return previous[0], stat_key
    return bytes_hash(path), stat_key


def bytes_hash(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except OSError as err:
        raise CacheError(f"cannot read input ({err.strerror})", path=path) from None
    return "sha256:" + digest.hexdigest()


def stat_hash(files: Sequence[Path], *, root: Path, extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode("utf-8"))
    for path in sorted(files):
        try:
            info = os.stat(path)
        except OSError as err:
            raise CacheError(f"cannot read input ({err.strerror})", path=path) from None
        digest.update(f"\0{_relative(path, root)}\0{info.st_size}\0{info.st_mtime_ns}".encode())
    return "sha256:" + digest.hexdigest()


def input_hash(parts: dict[str, Any]) -> str:
    """SHA-256 of a canonical JSON of everything that decides a patient's outputs."""
    return canonical_hash(parts)


class CacheIndex:
    """The manifest of one cache, kept in memory and written after every patient.

    Use :meth:`open` once per run, :meth:`commit` per patient.
    """

    def __init__(self, cache_dir: Path, manifest: CacheManifest, *, shared: bool = False
                 ) -> None:
        self.cache_dir = Path(cache_dir)
        self.manifest = manifest
        self.shared = shared
        """A shard: only patient records are written, never the manifest."""
        self._seen_mtime: int | None = None

    @classmethod
    def open(cls, cache_dir: Path, *, config: dict[str, Any], config_hash: str,
             pseudonymised: bool, shared: bool = False) -> CacheIndex:
        """Load (or start) the manifest of ``cache_dir`` and fold in committed patient records.

        ``shared`` (a shard): the index is kept in memory only; nothing but patient records
        is ever written.

        Raises:
            CacheError: the folder holds another schema version, or was made with the other
                ``--keep-ids`` setting (mixing pseudonyms and real ids would defeat both).
        """
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.nullcontext() if shared else _locked(cache_dir):
            if (cache_dir / MANIFEST_NAME).exists():
                manifest = read_stored_manifest(cache_dir)
            else:
                manifest = CacheManifest(medseq_version=__version__, config=config,
                                         config_hash=config_hash, pseudonymised=pseudonymised)
            if manifest.pseudonymised != pseudonymised:
                made = "without" if manifest.pseudonymised else "with"
                raise CacheError(f"this cache was made {made} --keep-ids; use the same setting "
                                 "or a new cache folder", path=cache_dir)
            for record in _committed_records(cache_dir):
                manifest.patients[record.patient_id] = record
            manifest.medseq_version = __version__
            manifest.config, manifest.config_hash = config, config_hash
            index = cls(cache_dir, manifest, shared=shared)
            if not shared:
                index._write()
        return index

    def set_fingerprint(self, fingerprint: dict[str, Any]) -> None:
        if self.shared:
            self.manifest.fingerprint = fingerprint
        elif fingerprint != self.manifest.fingerprint:
            self.manifest.fingerprint = fingerprint
            with _locked(self.cache_dir):
                self._refresh()
                self.manifest.fingerprint = fingerprint
                self._write()

    def get(self, patient_id: str) -> PatientRecord | None:
        return self.manifest.patients.get(patient_id)

    def commit(self, record: PatientRecord) -> None:
        """Write the patient's record, then the manifest (both atomically)."""
        folder = self.cache_dir / record.patient_id
        folder.mkdir(parents=True, exist_ok=True)
        write_patient_record(folder, record)
        if self.shared:
            self.manifest.patients[record.patient_id] = record
            return
        with _locked(self.cache_dir):
            self._refresh()
            self.manifest.patients[record.patient_id] = record
            self._write()

    def _refresh(self) -> None:
        """Pick up patients another process (shard) committed since our last write."""
        path = self.cache_dir / MANIFEST_NAME
        with contextlib.suppress(OSError):
            mtime = path.stat().st_mtime_ns
            if mtime != self._seen_mtime:
                theirs = read_manifest(self.cache_dir)
                for patient_id, record in theirs.patients.items():
                    mine = self.manifest.patients.get(patient_id)
                    if mine is None or _committed_at(record) > _committed_at(mine):
                        self.manifest.patients[patient_id] = record

    def _write(self) -> None:
        path = write_manifest(self.cache_dir, self.manifest)
        self._seen_mtime = path.stat().st_mtime_ns


def outputs_of(record: PatientRecord) -> list[str]:
    """Cache-relative paths of every file a patient record names."""
    paths = [record.crops] if record.crops else []
    for tp in record.timepoints:
        paths += [p for p in (tp.image, tp.image_native, tp.mask, tp.mask_native) if p]
    return paths


def is_complete(cache_dir: Path, record: PatientRecord) -> bool:
    """True when every file the record names exists."""
    return all((Path(cache_dir) / rel).is_file() for rel in outputs_of(record))


def clear_stale(folder: Path, keep: Sequence[str] = (), *, sole_writer: bool = False) -> None:
    """Delete cache outputs in a patient folder, except ``keep``, and abandoned temporary files.

    A temporary file is abandoned when its writer process is dead, or whenever ``sole_writer``
    (the run holds the cache's exclusive writer lock); see
    :func:`medseq.io.atomic.is_abandoned_temporary`.
    """
    if not folder.is_dir():
        return
    keep_names = {Path(name).name for name in keep}
    for path in folder.iterdir():
        stale_output = _OUTPUT.match(path.name) and path.name not in keep_names
        if path.is_file() and (stale_output or is_abandoned_temporary(
                path.name, sole_writer=sole_writer)):
            path.unlink(missing_ok=True)


def remove_abandoned(cache_dir: Path, *, sole_writer: bool) -> int:
    """Delete abandoned temporary files (a killed run's) in the cache and its patient folders.

    Returns how many were removed. Files of live writers (other shards) are kept.
    """
    cache_dir = Path(cache_dir)
    removed = len(remove_abandoned_temporaries(cache_dir, sole_writer=sole_writer))
    with contextlib.suppress(OSError):
        for entry in os.scandir(cache_dir):
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                removed += len(remove_abandoned_temporaries(Path(entry.path),
                                                            sole_writer=sole_writer))
    return removed


def _committed_records(cache_dir: Path) -> Iterator[PatientRecord]:
    yield from committed_records(cache_dir)  # a torn or foreign file: that patient is redone


def _committed_at(record: PatientRecord) -> float:
    """When a record was committed (``timings.committed_at``, seconds since the epoch)."""
    timings = getattr(record, "timings", None)
    value = timings.get("committed_at", 0.0) if isinstance(timings, dict) else 0.0
    return float(value) if isinstance(value, (int, float)) else 0.0


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).resolve().as_posix()


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    """Exclusive lock on the cache's manifest; best effort where ``flock`` is unsupported."""
    handle = open(Path(cache_dir) / LOCK_NAME, "a+b")  # noqa: SIM115 - held for the block
    try:
        # Lustre without flock raises: then the next run's repair from patient.json covers it.
        with contextlib.suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()


__all__ = [
    "RECORD_NAME",
    "SCHEMA_VERSION",
    "CacheIndex",
    "clear_stale",
    "content_hash",
    "file_hash",
    "input_hash",
    "is_complete",
    "outputs_of",
    "remove_abandoned",
]
