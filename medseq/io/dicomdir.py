"""DICOMDIR index files (CDs, DVDs, PACS exports): the files they reference, and those missing."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medseq.errors import DicomError


@dataclass(frozen=True)
class DicomdirFiles:
    """Files a DICOMDIR references: those on disk and those it names but that are missing."""

    present: tuple[Path, ...]
    missing: tuple[Path, ...]


def is_dicomdir_name(path: Path) -> bool:
    """DICOMDIR is always named so (upper case on media; any case after copying)."""
    return path.name.upper() == "DICOMDIR"


def referenced_files(path: Path) -> DicomdirFiles:
    """Resolve every ReferencedFileID of a DICOMDIR relative to its folder.

    Media file systems are case-insensitive while the copy on disk may not be, so a name that
    is not found as written is looked up ignoring case.

    Raises:
        DicomError: the file is not a readable DICOMDIR.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, force=False)
        records = ds.DirectoryRecordSequence
    except (InvalidDicomError, AttributeError, OSError, ValueError, EOFError) as err:
        raise DicomError(f"not a readable DICOMDIR ({' '.join(str(err).split())[:120]})",
                         path=path) from None
    folder = path.parent
    present: list[Path] = []
    missing: list[Path] = []
    seen: set[Path] = set()
    for record in records:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else list(file_id)
        target = _find(folder, [str(p).strip() for p in parts])
        if target in seen:
            continue
        seen.add(target)
        (present if target.is_file() else missing).append(target)
    return DicomdirFiles(present=tuple(present), missing=tuple(missing))


def _find(folder: Path, parts: list[str]) -> Path:
    """``folder/parts...``, matching each component case-insensitively when needed."""
    current = folder
    for part in parts:
        exact = current / part
        if exact.exists():
            current = exact
            continue
        try:
            names = {name.upper(): name for name in os.listdir(current)}
        except OSError:
            names = {}
        current = current / names.get(part.upper(), part)
    return current
