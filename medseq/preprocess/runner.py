"""A whole ``medseq preprocess`` run: discover, pick this shard, skip what is up to date,
process the rest in a process pool, commit each patient, summarise.

Patients are processed in the order of their cache ids (pseudonyms), so ``--shard K/N`` takes a
deterministic 1/N of them: the ones at positions K-1, K-1+N, ... of that order.
"""

from __future__ import annotations

import os
import re
import statistics
import time
import traceback
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import numpy as np

from medseq.config import config_hash
from medseq.contracts.cache import (
    MANIFEST_NAME,
    SHARDS_DIR,
    PatientRecord,
    PatientStatus,
    read_shard_records,
    read_stored_manifest,
)
from medseq.errors import CacheError, MedseqError
from medseq.io.cohort import Cohort, Patient, SkipKind
from medseq.io.writer_lock import writer_lock
from medseq.preprocess.cache import (
    CacheIndex,
    clear_stale,
    content_hash,
    file_hash,
    input_hash,
    is_complete,
    outputs_of,
    remove_abandoned,
)
from medseq.preprocess.config import PIPELINE_VERSION, PreprocessConfig
from medseq.preprocess.orient import ras_spacing
from medseq.preprocess.pipeline import PatientJob, SourceHashes, process_patient
from medseq.preprocess.pseudonym import hashed_uid, hide_uids, load_or_create_salt, pseudonym
from medseq.preprocess.shards import drop_shard_records, finish_shard, start_shard

FALLBACK_SPACING = (1.0, 1.0, 1.0)


@dataclass
class Failure:
    """A patient that failed, by cache id, with a one-line reason free of identifiers."""

    patient_id: str
    error: str


@dataclass
class RunSummary:
    """What a run did (printed as a table, or as JSON with ``--json``)."""

    cache: str
    patients: int
    """Patients in the input (all shards)."""
    selected: int
    """Patients this run was responsible for (its shard)."""
    processed: int = 0
    skipped: int = 0
    """Up to date: inputs and config unchanged since they were cached."""
    failed: list[Failure] = field(default_factory=list)
    timepoints: int = 0
    seconds: float = 0.0
    target_spacing: list[float] = field(default_factory=list)
    shard: str | None = None
    stopped_early: bool = False

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed_count"] = len(self.failed)
        return data


ProgressHook = Callable[[int, int], None]
"""Called with (patients done, patients selected) after each patient."""


def run_preprocess(
    cohort: Cohort, cache_dir: Path, *, config: PreprocessConfig, workers: int = 1,
    shard: tuple[int, int] | None = None, fail_fast: bool = False, keep_ids: bool = False,
    on_progress: ProgressHook | None = None, on_failure: Callable[[Failure], None] | None = None,
) -> RunSummary:
    """Bring ``cache_dir`` up to date with ``cohort`` (this shard's part of it).

    The run holds the cache's writer lock (:mod:`medseq.io.writer_lock`): shared with the other
    shards under ``shard``, else exclusive. It starts by removing temporary files that killed
    runs left behind (all of them when it is the sole writer, else those of dead processes).

    Raises:
        CacheError: the cache folder cannot be used (other schema, other ``--keep-ids``).
        OutputInUseError: another run writes the cache (another copy of this shard, or a run
            without ``--shard`` while shards run, or the other way round).
    """
    start = time.perf_counter()
    cache_dir = Path(os.path.abspath(cache_dir))
    with writer_lock(cache_dir, shard=shard, what="cache") as lock:
        remove_abandoned(cache_dir, sole_writer=lock.sole_writer)
        return _run_locked(cohort, cache_dir, config=config, workers=workers, shard=shard,
                           fail_fast=fail_fast, keep_ids=keep_ids, on_progress=on_progress,
                           on_failure=on_failure, sole_writer=lock.sole_writer, start=start)


def _run_locked(
    cohort: Cohort, cache_dir: Path, *, config: PreprocessConfig, workers: int,
    shard: tuple[int, int] | None, fail_fast: bool, keep_ids: bool,
    on_progress: ProgressHook | None, on_failure: Callable[[Failure], None] | None,
    sole_writer: bool, start: float,
) -> RunSummary:
    # A manifest layout's root is the CSV; paths are relative to its folder.
    base = cohort.root if cohort.root.is_dir() else cohort.root.parent
    rejected = _rejected_patients(cohort)
    everyone = cohort.patients + tuple(rejected)
    # Everything that can refuse the run does so before the first file is written.
    _check_id_setting(cache_dir, keep_ids=keep_ids)
    if keep_ids:
        _cache_ids(everyone, b"", keep_ids=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = load_or_create_salt(cache_dir)
    ids = _cache_ids(everyone, key, keep_ids=keep_ids)
    settings = config.model_dump(mode="json")
    if shard is None:
        drop_shard_records(cache_dir)  # this run writes the manifest itself
    index = CacheIndex.open(cache_dir, config=settings, config_hash=config_hash(config),
                            pseudonymised=not keep_ids, shared=shard is not None)
    spacing, fingerprint = _target_spacing(cohort, config, index.manifest.fingerprint)
    index.set_fingerprint(fingerprint)

    ordered = sorted(everyone, key=lambda p: ids[p.patient_id])
    plan = None
    if shard is not None:
        k, n = shard
        ordered = ordered[k - 1::n]
        plan = start_shard(cache_dir, shard, config=settings, config_hash=config_hash(config),
                           fingerprint=fingerprint, pseudonymised=not keep_ids,
                           cohort=[ids[p.patient_id] for p in everyone],
                           patients=[ids[p.patient_id] for p in ordered])
    summary = RunSummary(cache=str(cache_dir), patients=len(everyone),
                         selected=len(ordered), target_spacing=list(spacing),
                         shard=f"{shard[0]}/{shard[1]}" if shard else None)
    done = 0

    def finish(patient: Patient, record: PatientRecord) -> bool:
        """Commit one patient; True when the run must stop (``--fail-fast``)."""
        nonlocal done
        folder = cache_dir / record.patient_id
        record.timings["committed_at"] = round(time.time(), 3)
        if record.status == PatientStatus.OK:
            clear_stale(folder, keep=outputs_of(record), sole_writer=sole_writer)
            summary.processed += 1
            summary.timepoints += len(record.timepoints)
        else:
            record.error = _scrub(record.error or "failed", patient, record.patient_id,
                                  base, None if keep_ids else key)
            clear_stale(folder, sole_writer=sole_writer)
            failure = Failure(record.patient_id, record.error)
            summary.failed.append(failure)
            if on_failure is not None:
                on_failure(failure)
        index.commit(record)
        done += 1
        if on_progress is not None:
            on_progress(done, len(ordered))
        return record.status != PatientStatus.OK and fail_fast

    def jobs() -> Iterator[PatientJob]:
        nonlocal done
        for patient in ordered:
            cache_id = ids[patient.patient_id]
            previous = index.get(cache_id)
            if patient in rejected:
                if finish(patient, _failed(cache_id, patient, rejected[patient])):
                    summary.stopped_early = True
                    return
                continue
            try:
                job = _job(patient, cache_id, cache_dir, config, spacing, base, previous,
                           series_ids=_series_ids(patient, None if keep_ids else key))
            except MedseqError as err:
                if finish(patient, _failed(cache_id, patient, str(err))):
                    summary.stopped_early = True
                    return
                continue
            if previous is not None and _up_to_date(cache_dir, previous, job.input_hash):
                if previous.label != patient.label:
                    previous.label = patient.label
                    index.commit(previous)
                summary.skipped += 1
                summary.timepoints += len(previous.timepoints)
                done += 1
                if on_progress is not None:
                    on_progress(done, len(ordered))
                continue
            yield job

    by_id = {ids[p.patient_id]: p for p in ordered}
    results = _run_inline(jobs()) if workers <= 1 else _run_pool(jobs(), workers)
    for job, record in results:
        if finish(by_id[job.cache_id], record):
            summary.stopped_early = True
            results.close()
            break
    if plan is not None and not summary.stopped_early:
        finish_shard(cache_dir, plan)
    summary.seconds = round(time.perf_counter() - start, 3)
    return summary


def _run_inline(jobs: Iterator[PatientJob]
                ) -> Generator[tuple[PatientJob, PatientRecord], None, None]:
    for job in jobs:
        yield job, _safe_process(job)


def _run_pool(jobs: Iterator[PatientJob], workers: int
              ) -> Generator[tuple[PatientJob, PatientRecord], None, None]:
    """Run jobs in a spawned process pool, at most ``2 * workers`` queued (bounded memory)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = _pool_context()

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                   initializer=_init_worker, initargs=(threads, os.getpid()))

    pool = new_pool()
    in_flight: dict[Future[PatientRecord], tuple[PatientJob, ProcessPoolExecutor]] = {}
    exhausted = False
    try:
        while True:
            while not exhausted and len(in_flight) < 2 * workers:
                job = next(jobs, None)
                if job is None:
                    exhausted = True
                    break
                in_flight[pool.submit(_safe_process, job)] = (job, pool)
            if not in_flight:
                return
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                job, owner = in_flight.pop(future)
                try:
                    record = future.result()
                except BrokenProcessPool:
                    # A worker died (killed for memory): its patients fail, the run goes on.
                    record = _failed(job.cache_id, job.patient, "worker process died (out of "
                                     "memory?); rerun, with fewer --workers if it recurs")
                    if owner is pool:
                        pool.shutdown(wait=False, cancel_futures=True)
                        pool = new_pool()
                yield job, record
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


WORKER_MODULES = ("medseq.preprocess.pipeline", "medseq.preprocess.register",
                  "medseq.preprocess.crops", "medseq.io.load", "nibabel", "scipy.ndimage")
"""Imported once in the fork server, so each worker starts in milliseconds, not seconds."""


def _pool_context() -> BaseContext:
    """``forkserver`` with the heavy modules preloaded where available, else ``spawn``.

    Never plain ``fork``: this process may already run ITK's thread pool or the progress bar's
    thread, and a forked copy of a lock held by another thread deadlocks.
    """
    try:
        context = get_context("forkserver")
    except ValueError:  # Windows
        return get_context("spawn")
    context.set_forkserver_preload(list(WORKER_MODULES))
    return context


def _init_worker(threads: int, parent_pid: int) -> None:
    """Set ITK's threads; exit when the run's process dies (even by SIGKILL), so neither the
    workers nor the fork server (alive while a worker is) outlive it."""
    import SimpleITK as sitk  # noqa: N813

    from medseq.processes import exit_with_parent

    exit_with_parent(parent_pid)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _safe_process(job: PatientJob) -> PatientRecord:
    """:func:`process_patient`, with any error turned into a failed record (picklable)."""
    try:
        return process_patient(job)
    except MedseqError as err:
        return _failed(job.cache_id, job.patient, str(err), input_hash=job.input_hash)
    except MemoryError:
        return _failed(job.cache_id, job.patient, "out of memory; use fewer --workers",
                       input_hash=job.input_hash)
    except Exception as err:
        if os.environ.get("MEDSEQ_DEBUG"):
            traceback.print_exc()
        message = " ".join(str(err).split())[:200]
        return _failed(job.cache_id, job.patient,
                       f"internal error ({type(err).__name__}: {message}); rerun with "
                       "MEDSEQ_DEBUG=1 for the traceback and report it",
                       input_hash=job.input_hash)


def _failed(cache_id: str, patient: Patient, error: str, *, input_hash: str = ""
            ) -> PatientRecord:
    return PatientRecord(patient_id=cache_id, status=PatientStatus.FAILED, error=error,
                         input_hash=input_hash, label=patient.label)


def _job(patient: Patient, cache_id: str, cache_dir: Path, config: PreprocessConfig,
         spacing: tuple[float, float, float], root: Path, previous: PatientRecord | None, *,
         series_ids: tuple[str | None, ...]) -> PatientJob:
    """Hash the patient's inputs (reusing unchanged hashes) and describe its work.

    ``series_ids`` are the series UIDs as the cache stores them (keyed hashes unless
    ``--keep-ids``); the input hash covers those, so the manifest holds no raw UID to test
    guesses against.
    """
    hashes = []
    for position, tp in enumerate(patient.timepoints):
        before = previous.timepoints[position] if previous and position < len(
            previous.timepoints) else None
        image = content_hash(tp.image, root=root, previous=(
            before.content_hash, before.source_stat or "") if before else None)
        mask: tuple[str | None, str | None] = (None, None)
        if tp.mask is not None:
            mask = file_hash(tp.mask, root=root, previous=(
                before.mask_hash or "", before.mask_stat or "") if before else None)
        hashes.append(SourceHashes(content_hash=image[0], source_stat=image[1],
                                   mask_hash=mask[0], mask_stat=mask[1]))
    parts = {
        "pipeline": PIPELINE_VERSION, "config": config_hash(config), "spacing": list(spacing),
        "id": cache_id,
        "timepoints": [[tp.days, uid, tp.image.file_count, h.content_hash, h.mask_hash]
                       for tp, uid, h in zip(patient.timepoints, series_ids, hashes,
                                             strict=True)],
    }
    return PatientJob(patient=patient, cache_id=cache_id, cache_dir=cache_dir, config=config,
                      target_spacing=spacing, input_hash=input_hash(parts), hashes=tuple(hashes),
                      series_ids=series_ids)


def _series_ids(patient: Patient, key: bytes | None) -> tuple[str | None, ...]:
    """Each timepoint's series UID as stored: keyed-hashed with ``key`` (None: as is)."""
    return tuple(hashed_uid(uid, key) if uid and key is not None else uid
                 for uid in (tp.image.series_uid for tp in patient.timepoints))


def _up_to_date(cache_dir: Path, record: PatientRecord, wanted_hash: str) -> bool:
    return (record.status == PatientStatus.OK and record.input_hash == wanted_hash
            and is_complete(cache_dir, record))


def _check_id_setting(cache_dir: Path, *, keep_ids: bool) -> None:
    """Refuse (before writing anything) a cache made with the other ``--keep-ids`` setting
    (by one process or by shards): mixing pseudonyms and real ids would defeat both.
    :class:`CacheIndex` checks again under its lock."""
    made_with = []
    if (cache_dir / MANIFEST_NAME).is_file():
        made_with.append(read_stored_manifest(cache_dir).pseudonymised)
    if (cache_dir / SHARDS_DIR).is_dir():
        made_with += [plan.pseudonymised for plan in read_shard_records(cache_dir)]
    if keep_ids in made_with:  # pseudonymised == keep_ids: the other setting
        made = "without" if keep_ids else "with"
        raise CacheError(f"this cache was made {made} --keep-ids; use the same setting or a new "
                         "cache folder", path=cache_dir)


def _cache_ids(patients: tuple[Patient, ...], key: bytes, *, keep_ids: bool) -> dict[str, str]:
    ids = {p.patient_id: (p.patient_id if keep_ids else pseudonym(p.patient_id, key))
           for p in patients}
    if len(set(ids.values())) != len(ids):
        raise CacheError("two patients map to the same cache id; use --keep-ids or rename them")
    for cache_id in ids.values():
        if cache_id in ("", ".", "..") or "/" in cache_id or "\\" in cache_id:
            raise CacheError(f"patient id {cache_id!r} cannot name a folder; drop --keep-ids")
    return ids


def _target_spacing(cohort: Cohort, config: PreprocessConfig, fingerprint: dict[str, Any]
                    ) -> tuple[tuple[float, float, float], dict[str, Any]]:
    """The output spacing: the config's, else the one recorded at the first run, else the
    cohort's median per RAS axis (nnU-Net's fingerprint), recorded now."""
    if config.target_spacing is not None:
        spacing = tuple(float(v) for v in config.target_spacing)
        return (spacing[0], spacing[1], spacing[2]), {
            "target_spacing": list(spacing), "spacing_source": "config"}
    recorded = fingerprint.get("target_spacing")
    if fingerprint.get("spacing_source") == "cohort median" and isinstance(recorded, list) \
            and len(recorded) == 3:
        return (float(recorded[0]), float(recorded[1]), float(recorded[2])), fingerprint
    per_axis: list[list[float]] = [[], [], []]
    for patient in cohort.patients:
        for tp in patient.timepoints:
            series = tp.image
            if series.affine is not None:
                values = ras_spacing(np.asarray(series.affine, dtype=np.float64))
            elif series.spacing is not None:
                values = series.spacing
            else:
                continue
            for axis in range(3):
                per_axis[axis].append(float(values[axis]))
    spacing = FALLBACK_SPACING
    if per_axis[0]:
        x, y, z = (round(float(statistics.median(values)), 4) for values in per_axis)
        spacing = (x, y, z)
    return spacing, {"target_spacing": list(spacing), "spacing_source": "cohort median",
                     "series_count": len(per_axis[0])}


def _rejected_patients(cohort: Cohort) -> dict[Patient, str]:
    """Patients discovery could not use, as empty patients with the reason: they fail here."""
    usable = {p.patient_id for p in cohort.patients}
    rejected: dict[Patient, str] = {}
    for skipped in cohort.skipped:
        if (skipped.kind is SkipKind.PATIENT and skipped.patient_id
                and skipped.patient_id not in usable):
            patient = Patient(patient_id=skipped.patient_id, timepoints=())
            where = f"{skipped.path}: " if skipped.path else ""
            rejected.setdefault(patient, f"not usable: {where}{skipped.reason}")
    return rejected


_PATH = re.compile(r"(?<![\w.<>])/[^\s:;,()]+")
"""An absolute path in a message (up to a space or ``:;,()``)."""


def _shown_path(start: str, relative: str, kept: set[str]) -> str:
    """``start`` + a relative path with its folder names left out, except the patient's and
    timepoints' (replaced next by the cache id and ``tNN``); the file name stays."""
    parts = relative.split("/")
    shown = [start]
    for part in parts[:-1]:
        if part in kept:
            shown.append(part)
        elif shown[-1] != "...":
            shown.append("...")
    return "/".join([*shown, parts[-1]])


def _scrub(text: str, patient: Patient, cache_id: str, root: Path, key: bytes | None) -> str:
    """A failure message without folder names (they can hold names or dates; a path under the
    input shows as ``<input>/P.../tNN/<file>``, any other as ``.../<file>``), without
    timepoint names and, unless ``--keep-ids`` (``key`` None), the real patient id and DICOM
    UIDs (keyed-hashed as in the manifest); file names stay, so the user can find the file."""
    kept = {patient.patient_id, *(tp.name for tp in patient.timepoints)}
    inside = str(root).rstrip("/") + "/"

    def shown(match: re.Match[str]) -> str:
        path = match.group(0)
        if path.rstrip("/") == inside[:-1]:
            return "<input>"
        if path.startswith(inside):
            return _shown_path("<input>", path[len(inside):], kept)
        return _shown_path("...", path.lstrip("/"), kept)  # a file the manifest names elsewhere

    text = _PATH.sub(shown, text)
    if key is not None:
        text = hide_uids(text, key)
    replacements = [] if key is None else [(patient.patient_id, cache_id)]
    replacements += [(tp.name, f"t{i:02d}") for i, tp in enumerate(patient.timepoints)
                     if len(tp.name) >= 3]
    for old, new in replacements:
        if old:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(old)}(?![A-Za-z0-9])", new, text)
    return " ".join(text.split())
