"""Pseudonymous patient ids: a keyed hash (HMAC-SHA256) with a random key kept in the cache.

The key (``CACHE/salt.key``) is created once, by whichever run or shard gets there first, and
never printed. The same key gives the same pseudonym in every run and shard; without the key a
pseudonym cannot be linked back to a patient id by hashing guesses.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from medseq.errors import CacheError
from medseq.preprocess.manifest import SALT_NAME

KEY_BYTES = 32
PSEUDONYM_HEX = 10


def load_or_create_salt(cache_dir: Path) -> bytes:
    """The cache's key, created if absent (race-free: concurrent shards all read one key)."""
    path = Path(cache_dir) / SALT_NAME
    if not path.exists():
        _create_key(path)
    key = read_salt(cache_dir)
    if key is None:
        raise CacheError("pseudonym key could not be created", path=path)
    return key


def read_salt(folder: Path) -> bytes | None:
    """The key in ``folder`` (a cache or a run directory), or None when there is none.

    A key that exists but cannot be used is a CacheError: silently dropping it would change
    every pseudonym.
    """
    path = Path(folder) / SALT_NAME
    if not path.exists():
        return None
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError) as err:
        raise CacheError(f"unreadable pseudonym key ({type(err).__name__}); restore it from a "
                         "backup, or delete the cache and preprocess again", path=path) from None
    if len(key) < 16:
        raise CacheError("pseudonym key too short; restore it or start a new cache", path=path)
    return key


def pseudonym(patient_id: str, key: bytes) -> str:
    """``P`` + the first 10 hex characters of HMAC-SHA256(key, patient_id)."""
    digest = hmac.new(key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return "P" + digest[:PSEUDONYM_HEX]


def _create_key(path: Path) -> None:
    """Write a fresh key under ``path`` unless another process wins the race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{SALT_NAME}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(KEY_BYTES) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        # link() never replaces: the first process to link wins and everyone reads its key.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
