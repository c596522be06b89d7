"""DICOMDIR index files (CDs, DVDs, PACS exports): the files they reference, and those missing."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medseq.errors import DicomError
from medseq.io.cohort import Skipped


@dataclass(frozen=True)
class DicomdirFiles:
    """Files a DICOMDIR references: those on disk and those it names but that are missing."""

    present: tuple[Path, ...]
    missing: tuple[Path, ...]


def is_dicomdir_name(path: Path) -> bool:
    """DICOMDIR is always named so (upper case on media; any case after copying)."""
    return path.name.upper() == "DICOMDIR"


def dicomdir_files(path: Path, *, skipped: list[Skipped], warnings: list[str]) -> list[Path]:
    """The files a DICOMDIR references that are on disk; an unreadable DICOMDIR and every
    missing file go to ``skipped``, a count of the missing ones to ``warnings``."""
    try:
        found = referenced_files(path)
    except DicomError as err:
        skipped.append(Skipped(path=str(path), reason=err.reason))
        return []
    for missing in found.missing:
        skipped.append(Skipped(path=str(missing),
                               reason=f"referenced by DICOMDIR {path} but missing"))
    if found.missing:
        warnings.append(f"{path}: {len(found.missing)} of "
                        f"{len(found.missing) + len(found.present)} referenced files are "
                        "missing")
    return list(found.present)


def is_under(path: Path, root: Path) -> bool:
    """``path`` lies inside ``root`` (as written, no symlinks resolved)."""
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


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
