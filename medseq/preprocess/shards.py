"""Lock-free shards of one cache: each ``--shard K/N`` run writes its plan and its patients'
commit records only; ``preprocess --merge`` derives ``manifest.json`` from them.

The plan (``CACHE/.shards/K-of-N.json``, :class:`~medseq.contracts.cache.ShardRecord`) names
the settings, the whole cohort's cache ids and the shard's own, so a merge can refuse shards
made with other settings and name the patients no shard has committed. No file lock is needed
for correctness: no two shards write the same file.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseq import __version__
from medseq.contracts.cache import (
    SHARDS_DIR,
    PatientRecord,
    PatientStatus,
    ShardRecord,
    derive_manifest,
    read_shard_records,
    shard_record_path,
    write_manifest,
)
from medseq.contracts.document import write_document
from medseq.errors import CacheError

SHOWN = 10
"""Missing patients named in an error, at most."""


def start_shard(cache_dir: Path, shard: tuple[int, int], *, config: dict[str, Any],
                config_hash: str, fingerprint: dict[str, Any], pseudonymised: bool,
                cohort: list[str], patients: list[str]) -> ShardRecord:
    """Write this shard's plan (unfinished); plans of another split (other N) are dropped."""
    k, n = shard
    folder = Path(cache_dir) / SHARDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("[!.]*-of-*.json"):
        if not old.name.endswith(f"-of-{n}.json"):
            old.unlink(missing_ok=True)
    plan = ShardRecord(shard=[k, n], medseq_version=__version__, config=config,
                       config_hash=config_hash, fingerprint=fingerprint,
                       pseudonymised=pseudonymised, cohort=sorted(cohort),
                       patients=list(patients), started=round(time.time(), 3))
    write_document(shard_record_path(cache_dir, k, n), plan)
    return plan


def finish_shard(cache_dir: Path, plan: ShardRecord) -> None:
    """Mark the plan finished: every patient of the shard is committed."""
    plan.finished = True
    write_document(shard_record_path(cache_dir, plan.shard[0], plan.shard[1]), plan)


def drop_shard_records(cache_dir: Path) -> None:
    """Forget the shard plans (a run without ``--shard`` writes the manifest itself)."""
    with contextlib.suppress(OSError):
        shutil.rmtree(Path(cache_dir) / SHARDS_DIR)


@dataclass
class MergeSummary:
    """What ``preprocess --merge`` did."""

    cache: str
    shards: int
    patients: int
    failed: int
    changed: bool
    """False when ``manifest.json`` already held exactly this index."""


def merge_cache(cache_dir: Path) -> MergeSummary:
    """Write ``manifest.json`` from the shards' records; idempotent.

    Raises:
        CacheError: no shard plans; plans of different settings (named); a shard that never
            started or did not finish, or patients without a record (named). Nothing is written.
        OutputInUseError: another run writes the cache right now (exit code 1).
    """
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        raise CacheError("no such cache folder", path=cache_dir)
    from medseq.io.writer_lock import writer_lock

    # Alone: shards or an unsharded run still writing would make the index a mix of states.
    with writer_lock(cache_dir, what="cache"):
        return _merge_locked(cache_dir)


def _merge_locked(cache_dir: Path) -> MergeSummary:
    manifest = derive_manifest(cache_dir)  # refuses mixed settings
    plans = read_shard_records(cache_dir)
    _check_complete(cache_dir, plans, manifest.patients)
    path = cache_dir / "manifest.json"
    from medseq.contracts.document import dump_document

    manifest.patients = dict(sorted(manifest.patients.items()))
    before = path.read_text(encoding="utf-8") if path.is_file() else None
    changed = before != dump_document(manifest)
    if changed:
        write_manifest(cache_dir, manifest)
    failed = sum(1 for r in manifest.patients.values() if r.status != PatientStatus.OK)
    return MergeSummary(cache=str(cache_dir), shards=len(plans),
                        patients=len(manifest.patients), failed=failed, changed=changed)


def _check_complete(cache_dir: Path, plans: list[ShardRecord],
                    records: dict[str, PatientRecord]) -> None:
    n = plans[0].shard[1]
    present = {p.shard[0] for p in plans}
    covered = {pid for p in plans for pid in p.patients}
    problems = [f"shard {k}/{n} never started" for k in range(1, n + 1) if k not in present]
    missing = sorted(pid for pid in plans[0].cohort if pid not in covered or pid not in records)
    for plan in plans:
        if not plan.finished:
            problems.append(f"shard {plan.shard[0]}/{n} did not finish")
            missing += [pid for pid in plan.patients if pid in records
                        and _committed_at(records[pid]) < plan.started]
    if not problems and not missing:
        return
    missing = sorted(set(missing))
    named = ", ".join(missing[:SHOWN]) + (f" and {len(missing) - SHOWN} more"
                                          if len(missing) > SHOWN else "")
    what = "; ".join(problems) or "patients without a commit record"
    raise CacheError(f"cannot merge: {what}; missing patients: {named or 'none'}; rerun those "
                     "shards, then merge again", path=cache_dir)


def _committed_at(record: PatientRecord) -> float:
    value = record.timings.get("committed_at", 0.0)
    return float(value) if isinstance(value, (int, float)) else 0.0


__all__ = ["MergeSummary", "drop_shard_records", "finish_shard", "merge_cache", "start_shard"]
