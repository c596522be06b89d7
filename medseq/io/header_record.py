"""Plain-Python copies of the header fields discovery looks at, many times, for every file.

pydicom converts an element's raw bytes on first access and wraps every later access in several
layers of lookups; discovery touches ~25 fields of every file several times (grouping, scout
split, geometry). Converting each field once, here, into ``str``/``int``/``float`` or lists of
them, makes the rest a dict lookup. Fields whose encoding depends on the character set (LO, SH,
PN...) and sequences still go through pydicom, so values are what pydicom would give.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydicom import Dataset

_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI"})
_NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}


class HeaderRecord(dict[str, Any]):
    """Keyword -> plain value (``None`` when absent or empty) for one file.

    Behaves like the parts of a pydicom Dataset discovery and
    :func:`medseq.io.dicom_geometry.series_geometry` use: ``get``, ``in`` and ``filename``.
    """

    filename: str

    def __init__(self, values: dict[str, Any], *, filename: str) -> None:
        super().__init__(values)
        self.filename = filename


def header_record(ds: Dataset, keywords: Iterable[str]) -> HeaderRecord | Dataset:
    """A :class:`HeaderRecord` of ``keywords`` from ``ds``; enhanced multi-frame files (their
    geometry sits in functional group sequences) are returned as they are."""
    if "PerFrameFunctionalGroupsSequence" in ds:
        return ds
    wanted = _tags(tuple(keywords))
    values: dict[str, Any] = {}
    # Walk the elements present once (a header holds ~50-150) rather than look up each keyword.
    elements = getattr(ds, "_dict", None)
    items = elements.items() if isinstance(elements, dict) else (
        (tag, ds.get_item(tag)) for tag in sorted(ds.keys()))
    for tag, element in items:
        keyword = wanted.get(tag)
        if keyword is None:
            continue
        value = _value(ds, tag, element)
        if value is not None and value != "" and value != []:
            values[keyword] = value
    meta = getattr(ds, "file_meta", None)
    if "SOPClassUID" not in values and meta is not None:
        sop = meta.get("MediaStorageSOPClassUID")
        if sop:
            values["SOPClassUID"] = str(sop)
    return HeaderRecord(values, filename=str(getattr(ds, "filename", "") or ""))


@functools.lru_cache(maxsize=8)
def _tags(keywords: tuple[str, ...]) -> dict[int, str]:
    from pydicom.datadict import tag_for_keyword

    return {int(tag): keyword for keyword in keywords
            if (tag := tag_for_keyword(keyword)) is not None}


def _value(ds: Dataset, tag: int, element: Any) -> Any:
    from pydicom.dataelem import RawDataElement

    if isinstance(element, RawDataElement) and element.value is not None:
        vr = element.VR if element.VR not in (None, "UN") else _dictionary_vr(tag)
        try:
            fast = _fast(element.value, vr, little=element.is_little_endian)
        except (ValueError, struct.error, UnicodeDecodeError):
            fast = _NOT_FAST
        if fast is not _NOT_FAST:
            return fast
    return _plain(ds[tag].value)


@functools.lru_cache(maxsize=256)
def _dictionary_vr(tag: int) -> str | None:
    from pydicom.datadict import dictionary_VR

    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


_NOT_FAST = object()


def _fast(raw: bytes, vr: str | None, *, little: bool) -> Any:
    if vr in _ASCII_VRS or vr in ("DS", "IS"):
        text = raw.decode("ascii")
        parts = [part.strip(" \x00") for part in text.split("\\")]
        if vr == "DS":
            numbers: list[Any] = [float(p) for p in parts if p]
        elif vr == "IS":
            numbers = [int(float(p)) for p in parts if p]
        else:
            return parts[0] if len(parts) == 1 else parts
        return numbers[0] if len(numbers) == 1 else (numbers or None)
    if vr in _NUMBER_FORMATS:
        code = _NUMBER_FORMATS[vr]
        count = len(raw) // struct.calcsize(code)
        numbers = list(struct.unpack(("<" if little else ">") + code * count, raw))
        return numbers[0] if count == 1 else (numbers or None)
    return _NOT_FAST


def _plain(value: Any) -> Any:
    """pydicom values as plain Python (MultiValue -> list, DSfloat -> float, PN -> str)."""
    if value is None:
        return None
    name = type(value).__name__
    if name == "MultiValue" or isinstance(value, list):
        return [_plain(v) for v in value]
    if name in ("DSfloat", "DSdecimal"):
        return float(value)
    if name == "IS":
        return int(value)
    if name in ("PersonName", "UID"):
        return str(value)
    return value
