"""Pseudonymous patient ids: a keyed hash (HMAC-SHA256) with a random key kept in the cache.

The key (``CACHE/salt.key``) is created once, by whichever run or shard gets there first, and
never printed. The same key gives the same pseudonym in every run and shard; without the key a
pseudonym cannot be linked back to a patient id by hashing guesses. DICOM UIDs (which identify a
patient's studies at the hospital) are stored keyed-hashed the same way. Every copy of the key
(the cache's, a run's, predict's temporary one) is readable by its owner only (mode 0600).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from pathlib import Path

from medseq.contracts.cache import SALT_NAME
from medseq.errors import CacheError

KEY_BYTES = 32
PSEUDONYM_HEX = 10
KEY_MODE = 0o600
UID_PREFIX = "hmac-"
UID_HEX = 16
_UID = re.compile(r"(?<![\w.])[0-2](?:\.\d+){3,}(?!\.?\d)")
"""A DICOM UID in free text: dotted numbers under the ISO/ITU-T roots 0, 1 and 2, at least
four components (so decimals and versions are left alone); a file extension may follow."""


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


def write_salt(folder: Path, key: bytes) -> Path:
    """Write a copy of ``key`` as ``folder/salt.key`` (mode 0600 whatever the umask; atomic).

    For run directories and predict's temporary cache: one writer, so the copy replaces any
    key already there.
    """
    return _replace_private(Path(folder) / SALT_NAME, _key_text(key))


def copy_salt(source: Path, target: Path) -> bool:
    """Copy ``source/salt.key`` byte for byte to ``target/salt.key``, mode 0600 (atomic).

    Returns:
        False when ``source`` has no key (nothing is written).
    """
    path = Path(source) / SALT_NAME
    if not path.is_file():
        return False
    _replace_private(Path(target) / SALT_NAME, path.read_bytes())
    return True


def hashed_uid(uid: str, key: bytes) -> str:
    """A DICOM UID as a pseudonymised cache stores it: ``hmac-`` + 16 hex characters of
    HMAC-SHA256(key, ``uid:`` + UID), so equal UIDs still compare equal."""
    digest = hmac.new(key, b"uid:" + uid.encode("utf-8"), hashlib.sha256).hexdigest()
    return UID_PREFIX + digest[:UID_HEX]


def hide_uids(text: str, key: bytes) -> str:
    """``text`` with every DICOM UID in it replaced by :func:`hashed_uid`."""
    return _UID.sub(lambda match: hashed_uid(match.group(0), key), text)


def _create_key(path: Path) -> None:
    """Write a fresh key under ``path`` unless another process wins the race."""
    tmp = _private_file(path, _key_text(secrets.token_bytes(KEY_BYTES)))
    try:
        # link() never replaces: the first process to link wins and everyone reads its key.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def _key_text(key: bytes) -> bytes:
    return (key.hex() + "\n").encode("ascii")


def _replace_private(path: Path, data: bytes) -> Path:
    tmp = _private_file(path, data)
    try:
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _private_file(path: Path, data: bytes) -> str:
    """A temporary file beside ``path`` holding ``data``, mode 0600, flushed to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{SALT_NAME}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            # mkstemp makes 0600 files; say so explicitly, whatever the platform or umask.
            os.fchmod(handle.fileno(), KEY_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp
