"""Shards of one ``medseq track`` output: ``track --shard K/N -o OUT`` writes its patients'
tracking to ``OUT/.shards/K-of-N.json`` (a partial ``tracks.json``); ``track --merge OUT``
joins the shards into ``lesions.csv``, ``response.csv`` and ``tracks.json``, equal to those of
one process. No file lock is needed: no two shards write the same file.
"""

from __future__ import annotations

from pathlib import Path

from medseq.contracts.document import read_document, write_document
from medseq.contracts.tracks import TrackingSettings, TracksDocument
from medseq.errors import CacheError

SHARDS_DIR = ".shards"
SHOWN = 10


def shard_path(out_dir: Path, shard: tuple[int, int]) -> Path:
    return Path(out_dir) / SHARDS_DIR / f"{shard[0]}-of-{shard[1]}.json"


def write_shard(out_dir: Path, shard: tuple[int, int], document: TracksDocument) -> Path:
    """Write one shard's tracking; shard files of another split (other N) are dropped."""
    folder = Path(out_dir) / SHARDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("[!.]*-of-*.json"):
        if not old.name.endswith(f"-of-{shard[1]}.json"):
            old.unlink(missing_ok=True)
    return write_document(shard_path(out_dir, shard), document)


def merge_tracks(out_dir: Path) -> TracksDocument:
    """The tracking of every shard in ``out_dir`` as one document (not written here).

    Raises:
        CacheError: no shards; shards of different settings or caches (named); patients of the
            cache that no shard tracked (named). Exit code 2.
    """
    from medseq.contracts.cache import read_manifest

    out_dir = Path(out_dir)
    paths = sorted(p for p in (out_dir / SHARDS_DIR).glob("*-of-*.json")
                   if not p.name.startswith("."))
    if not paths:
        raise CacheError(f"no shard outputs in {SHARDS_DIR}/: run medseq track --shard K/N -o "
                         f"{out_dir} first", path=out_dir)
    docs = [read_document(p, TracksDocument) for p in paths]
    groups: dict[str, list[str]] = {}
    for doc in docs:
        key = _settings(doc).model_dump_json() + str(doc.input_hash)
        groups.setdefault(key, []).append(doc.settings.shard or "?")
    if len(groups) > 1:
        named = "; ".join(", ".join(sorted(names)) for names in groups.values())
        raise CacheError(f"shards were made with different settings or caches ({named}); "
                         "rerun them with one configuration", path=out_dir)
    n = int(str(docs[0].settings.shard).split("/")[1])
    done = {int(str(d.settings.shard).split("/")[0]) for d in docs}
    cache = Path(docs[0].settings.cache or "")
    patients = {p.patient_id: p for d in docs for p in d.patients}
    expected = sorted(read_manifest(cache).patients)
    missing = [pid for pid in expected if pid not in patients]
    if missing or len(done) != n:
        absent = ", ".join(f"{k}/{n}" for k in range(1, n + 1) if k not in done) or "none"
        named = ", ".join(missing[:SHOWN]) + (f" and {len(missing) - SHOWN} more"
                                              if len(missing) > SHOWN else "")
        raise CacheError(f"cannot merge: shards not finished: {absent}; missing patients: "
                         f"{named or 'none'}; rerun those shards, then merge again",
                         path=out_dir)
    first = docs[0]
    return TracksDocument(medseq_version=first.medseq_version, input_hash=first.input_hash,
                          settings=_settings(first),
                          patients=[patients[pid] for pid in sorted(patients)])


def _settings(doc: TracksDocument) -> TrackingSettings:
    """A shard's settings as one process would have written them (no shard)."""
    given = doc.settings
    return TrackingSettings(cache=given.cache, min_volume_ml=given.min_volume_ml,
                            lesion_info=given.lesion_info, shard=None, input=given.input)


__all__ = ["merge_tracks", "shard_path", "write_shard"]
