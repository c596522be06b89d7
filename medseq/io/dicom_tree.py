"""Read the header of every file of a DICOM tree (no pixels), following DICOMDIRs.

Grouping into patients, studies and series is :mod:`medseq.io.dicom_grouping`; the choice of
each study's series is :mod:`medseq.io.dicom_series_choice`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from medseq.errors import DicomError
from medseq.io.cohort import Skipped
from medseq.io.dicom_fields import Header, Item
from medseq.io.dicom_fields import header_text as _text
from medseq.io.dicom_fields import sop_class as _sop_class
from medseq.io.dicomdir import dicomdir_files, is_dicomdir_name
from medseq.io.dicomdir import is_under as _under
from medseq.io.header_scan import scan_record
from medseq.io.walk import WalkReport, walk_files

_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

Progress = Callable[[int], None]
"""Called with the number of files read so far (every few hundred files)."""


@dataclass
class HeaderIndex:
    """Readable DICOM headers under a path, and every file left out with its reason."""

    headers: list[Item] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files_seen: int = 0
    dicomdirs: int = 0
    broken: dict[str, list[tuple[Path, str, str]]] = field(default_factory=dict)
    """SeriesInstanceUID -> ``(file, reason, SOPInstanceUID)`` of files of that series whose
    header was read but that are unusable (truncated, pixels stripped): unless an intact copy
    of the same instance is there, their series cannot be loaded whole."""


def index_headers(path: Path, *, progress: Progress | None = None) -> HeaderIndex:
    """Read the header of every file under ``path`` (a folder, a DICOMDIR or one file).

    Pixel data is never read. A DICOMDIR found in the tree is followed: files it names that
    are missing are reported; the files it references are read like any other.
    """
    index = HeaderIndex()
    report = WalkReport()
    if path.is_file() and is_dicomdir_name(path):
        files = _dicomdir_files(path, index)
    elif path.is_file():
        files = [path]
    else:
        files = []
        for file, size in walk_files(path, report):
            index.files_seen += 1
            if is_dicomdir_name(file):
                files.extend(p for p in _dicomdir_files(file, index) if not _under(p, path))
                continue
            if size == 0:
                index.skipped.append(Skipped(path=str(file), reason="empty (0 bytes)"))
                continue
            files.append(file)
    index.skipped.extend(report.skipped)
    index.files_seen = max(index.files_seen, len(files))
    unique = list(dict.fromkeys(files))
    for file, (record, reason, partial) in zip(unique, _read_all(unique, progress), strict=True):
        if record is None:
            index.skipped.append(Skipped(path=str(file), reason=reason))
            uid, sop = partial
            if uid:
                index.broken.setdefault(uid, []).append((file, reason, sop))
            continue
        if _sop_class(record) == _DICOMDIR_SOP_CLASS:
            index.skipped.append(Skipped(path=str(file), reason="a DICOMDIR index under "
                                         "another name; its files are read from the tree"))
            continue
        index.headers.append((file, record))
    return index


PARALLEL_MIN_FILES = 600
"""Headers of at least this many files are read by two processes (when there are two CPUs)."""
_CHUNK_FILES = 200
"""Progress is reported every this many files."""

_Read: TypeAlias = "tuple[Header | None, str, tuple[str, str]]"
"""A file's header record, or None with the reason and the (series, instance) UIDs it gave."""


def _read_one(file: Path) -> _Read:
    record = scan_record(file)  # the common file, without pydicom
    if record is not None:
        return record, "", ("", "")
    from medseq.io.dicom import header_fields, read_header

    try:
        return header_fields(read_header(file)), "", ("", "")
    except DicomError as err:
        partial = getattr(err, "header", None)
        if partial is None:
            return None, err.reason, ("", "")
        fields = header_fields(partial)
        return None, err.reason, (_text(fields, "SeriesInstanceUID"),
                                  _text(fields, "SOPInstanceUID"))


def _read_all(files: list[Path], progress: Progress | None) -> Iterator[_Read]:
    """Every file's header, in order; two processes share a large tree when two CPUs exist.

    Reading a header is Python work bound by one core; results are identical either way.
    """
    from medseq.io.two_process import can_fork, map_in_two

    if len(files) >= PARALLEL_MIN_FILES and can_fork():
        yield from map_in_two(_read_one, files, progress=progress, every=_CHUNK_FILES)
        return
    for done, file in enumerate(files, start=1):
        if progress is not None and done % 250 == 0:
            progress(done)
        yield _read_one(file)


def _dicomdir_files(path: Path, index: HeaderIndex) -> list[Path]:
    index.dicomdirs += 1
    return dicomdir_files(path, skipped=index.skipped, warnings=index.warnings)
