"""A cache's stored tracking: computed at most once, then read by every later stage.

``CACHE/tracks.json`` holds the tracking of the whole cache with the default settings (the
settings ``train``, ``evaluate --data`` and ``report`` use). ``medseq track CACHE -o OUT``
writes it beside ``OUT/tracks.json`` when it tracks the whole cache with those settings, and
:func:`tracks_for_cache` writes it when it had to compute it. It records an input hash (the
bytes of ``manifest.json``, the tracking settings and the medseq version); a stored copy whose
hash differs from the cache's current one is stale and computed again. The store is skipped
(tracking is still returned) when the cache is read-only or another process writes it
(:mod:`medseq.io.writer_lock`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from medseq import __version__
from medseq.config import canonical_hash
from medseq.contracts.cache import read_manifest
from medseq.contracts.tracks import TRACKS_NAME, TrackingSettings, TracksDocument, read_tracks
from medseq.errors import CacheError, OutputInUseError
from medseq.tracking.lesions import DEFAULT_MIN_VOLUME_ML
from medseq.tracking.match import MatchSettings


def input_hash(cache_dir: Path, *, min_volume_ml: float = DEFAULT_MIN_VOLUME_ML,
               lesion_info: Path | None = None, match: MatchSettings | None = None,
               shard: tuple[int, int] | None = None) -> str:
    """Hash of what a tracking of ``cache_dir`` with these settings is computed from.

    Raises:
        CacheError: the cache has no readable ``manifest.json``.
    """
    # The index as readers see it: rebuilt from newer patient records of shards, which never
    # rewrite manifest.json, so the file's bytes alone could call a changed cache unchanged.
    manifest = canonical_hash(read_manifest(Path(cache_dir)).model_dump(mode="json"))
    info = (_file_hash(Path(lesion_info), missing="lesion info file not found")
            if lesion_info is not None else None)
    return canonical_hash({
        "manifest": manifest, "min_volume_ml": float(min_volume_ml), "lesion_info": info,
        "match": dataclasses.asdict(match or MatchSettings()),
        "shard": list(shard) if shard else None, "medseq_version": __version__})


def tracks_for_cache(cache_dir: Path) -> TracksDocument:
    """The tracking of every patient of ``cache_dir`` with the default settings.

    Read from ``CACHE/tracks.json`` when it is there and not stale; else computed, and stored
    there when the cache can be written (see the module docstring).

    Raises:
        CacheError: no or invalid manifest, or a file it names is missing or unreadable.
    """
    from medseq.tracking.outputs import tracks_document
    from medseq.tracking.pipeline import track_cache

    cache_dir = Path(cache_dir)
    expected = input_hash(cache_dir)
    stored = _read_stored(cache_dir / TRACKS_NAME)
    if stored is not None and stored.input_hash == expected:
        return stored
    settings = TrackingSettings(min_volume_ml=DEFAULT_MIN_VOLUME_ML)
    document = tracks_document(track_cache(cache_dir), settings=settings, input_hash=expected)
    if not _newer(cache_dir / TRACKS_NAME):  # a newer medseq's copy is left alone
        store_tracks(cache_dir, document)
    return document


def store_tracks(cache_dir: Path, document: TracksDocument) -> bool:
    """Keep ``document`` as the cache's stored tracking; True when it was written.

    Written only when it is the default-settings tracking of the cache as it is now (its input
    hash is the cache's), and the cache is writable and not being written by another process.
    """
    from medseq.contracts.tracks import write_tracks
    from medseq.io.writer_lock import writer_lock

    cache_dir = Path(cache_dir)
    try:
        with writer_lock(cache_dir, what="cache"):
            if document.input_hash != input_hash(cache_dir):
                return False
            write_tracks(cache_dir / TRACKS_NAME, document)
    except (OutputInUseError, OSError):
        return False
    return True


def _read_stored(path: Path) -> TracksDocument | None:
    """The stored tracking, None when missing or unreadable by this medseq."""
    if not path.is_file():
        return None
    try:
        return read_tracks(path)
    except CacheError:
        return None


def _newer(path: Path) -> bool:
    """Whether ``path`` holds a tracks.json of a newer schema than this medseq reads."""
    try:
        version = json.loads(path.read_text(encoding="utf-8")).get("schema_version")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(version, int) and version > TracksDocument.SCHEMA


def _file_hash(path: Path, *, missing: str, where: Path | None = None) -> str:
    try:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise CacheError(missing, path=where or path) from None
    except OSError as err:
        raise CacheError(f"cannot read ({err.strerror})", path=path) from None
