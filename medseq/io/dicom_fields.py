"""Header fields of one DICOM file as discovery reads them (a plain record or a Dataset)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from medseq.io.header_record import HeaderRecord

if TYPE_CHECKING:
    from pydicom import Dataset

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
LABELMAP_SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.7"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
ANNOTATION_KINDS: dict[str, str] = {
    SEG_SOP_CLASS: "SEG", LABELMAP_SEG_SOP_CLASS: "SEG", RTSTRUCT_SOP_CLASS: "RTSTRUCT"}
"""SOP classes discovery keeps as lesion masks of the series they reference
(:mod:`medseq.dicom_objects.attach`), not as skipped non-images, and what each is."""

Header: TypeAlias = "HeaderRecord | Dataset"
"""A file's header fields (a plain record; a Dataset for enhanced multi-frame files)."""
Item: TypeAlias = "tuple[Path, Header]"
"""A file and its header."""


def common_folder(paths: Iterable[Path]) -> Path:
    """The deepest folder holding all ``paths`` (the first folder when they share none)."""
    import os

    folders = {os.path.dirname(p) for p in paths}  # (str: hashing Paths costs more)
    if not folders:
        return Path()
    if len(folders) == 1:
        return Path(folders.pop())
    try:
        return Path(os.path.commonpath(list(folders)))
    except ValueError:
        return sorted(Path(f) for f in folders)[0]


def header_text(ds: Header, keyword: str) -> str:
    """The value of ``keyword`` as stripped text (empty when absent)."""
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def image_type(ds: Header) -> list[str]:
    """ImageType values, upper case."""
    value = ds.get("ImageType")
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [str(v).strip().upper() for v in values]


def sop_class(ds: Header) -> str:
    """SOPClassUID, else the file meta's MediaStorageSOPClassUID."""
    sop = header_text(ds, "SOPClassUID")
    if not sop and hasattr(ds, "file_meta"):
        sop = str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "")
    return sop


def frame_count(ds: Header) -> int:
    """NumberOfFrames (1 when absent)."""
    value = header_number(ds, "NumberOfFrames")
    return int(value) if value else 1


def header_number(ds: Header, keyword: str) -> float | None:
    """The value of ``keyword`` as a float (None when absent or not a number)."""
    try:
        value = ds.get(keyword)
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
