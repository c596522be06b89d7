"""Atomic file writes: readers see the old file or the new one, never half of it.

A temporary file is named ``.<name>.<host>-<pid>.<random>.tmp<suffixes>`` beside its target:
the owner tag (:func:`medseq.processes.owner_tag`) lets a later run remove what a killed writer
left behind without touching the files of a writer that is still running
(:func:`is_abandoned_temporary`).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from medseq.processes import owner_alive, owner_tag

TEMPORARY = re.compile(r"^\..+\.tmp")
"""Names of temporary files (hidden, with ``.tmp`` before the final suffixes)."""
_OWNER = re.compile(r"\.([0-9a-f]{6})-(\d+)\.[A-Za-z0-9_]+\.tmp(?:\.|$)")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary name keeps the final suffixes (``.nii.gz`` stays ``.nii.gz``) so writers that
    choose a format by extension work; on failure the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.{owner_tag()}.", suffix=f".tmp{suffix}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600 files; outputs get the permissions a plain open() would give.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def temporary_owner(name: str) -> tuple[str, int] | None:
    """``(host tag, pid)`` of the process that created temporary file ``name``, if recorded."""
    match = _OWNER.search(name)
    return (match.group(1), int(match.group(2))) if match else None


def is_abandoned_temporary(name: str, *, sole_writer: bool) -> bool:
    """Whether ``name`` is a temporary file nobody will rename any more.

    ``sole_writer``: the caller holds the folder's exclusive writer lock, so every temporary
    file in it is abandoned. Otherwise only files of a dead process of this machine are (a
    file of another machine, or without an owner tag, might belong to a live writer).
    """
    if not TEMPORARY.match(name):
        return False
    if sole_writer:
        return True
    owner = temporary_owner(name)
    return owner is not None and owner_alive(*owner) is False


def remove_abandoned_temporaries(folder: Path, *, sole_writer: bool) -> list[Path]:
    """Delete the abandoned temporary files directly in ``folder``; returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if is_abandoned_temporary(entry.name, sole_writer=sole_writer) and entry.is_file(
                follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
