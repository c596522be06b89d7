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
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydicom import Dataset


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
    from pydicom.dataelem import RawDataElement

    if "PerFrameFunctionalGroupsSequence" in ds:
        return ds
    wanted = _tags(tuple(keywords))
    values: dict[str, Any] = {}
    # Walk the elements present once (a header holds ~50-150) rather than look up each keyword.
    elements = getattr(ds, "_dict", None)
    items = elements.items() if isinstance(elements, dict) else (
        (tag, ds.get_item(tag)) for tag in sorted(ds.keys()))
    codec = _text_codec(elements.get(_CHARACTER_SET) if isinstance(elements, dict) else None)
    for tag, element in items:
        keyword = wanted.get(tag)
        if keyword is None:
            continue
        value = NOT_FAST
        if type(element) is RawDataElement and element.value is not None:
            vr = element.VR
            if vr is None or vr == "UN":
                vr = _dictionary_vr(tag)
            value = raw_value(vr, element.value, element.is_little_endian, codec)
        if value is NOT_FAST:
            value = _plain(ds[tag].value)
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


@functools.lru_cache(maxsize=256)
def _dictionary_vr(tag: int) -> str | None:
    from pydicom.datadict import dictionary_VR

    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


NOT_FAST: Any = object()
"""What :func:`raw_value` gives for a value only pydicom converts exactly."""
_CHARACTER_SET = 0x00080005
_CODECS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}
"""SpecificCharacterSet values whose LO/SH text decodes as one codec (no value means pydicom's
default, Latin-1); other character sets (with code extensions) go through pydicom."""


def raw_value(vr: str | None, raw: bytes, little: bool, codec: str | None) -> Any:
    """The plain value of one element's bytes as pydicom would convert them, or
    :data:`NOT_FAST` when only pydicom can (its VR, character set or bytes are unusual)."""
    convert = _CONVERTERS.get(vr or "")
    try:
        if convert is not None:
            return convert(raw, little)
        if codec is not None and vr in ("LO", "SH"):
            return _texts(raw, codec)
    except (ValueError, struct.error, UnicodeDecodeError):
        pass
    return NOT_FAST


def text_codec(raw: bytes | None) -> str | None:
    """The codec of LO/SH text under SpecificCharacterSet ``raw`` (None: absent), or None
    when only pydicom decodes it."""
    if raw is None:
        return "latin_1"
    return _CODECS.get(raw.decode("ascii", "replace").strip(" \x00"))


def _text_codec(element: Any) -> str | None:
    from pydicom.dataelem import RawDataElement

    if element is None:
        return text_codec(None)
    if type(element) is not RawDataElement:
        return None
    return text_codec(element.value or b"")


def _texts(raw: bytes, codec: str) -> Any:
    """LO/SH values as pydicom gives them: split at backslashes, trailing spaces removed."""
    parts = [part.rstrip("\x00 ") for part in raw.decode(codec).split("\\")]
    return parts[0] if len(parts) == 1 else parts


def _strings(raw: bytes, little: bool) -> Any:
    text = raw.decode("ascii")
    if "\\" not in text:
        return text.strip(" \x00")
    return [part.strip(" \x00") for part in text.split("\\")]


def _decimals(raw: bytes, little: bool) -> Any:
    parts = _strings(raw, little)
    if isinstance(parts, str):
        return float(parts) if parts else None
    return [float(p) for p in parts if p] or None


def _integers(raw: bytes, little: bool) -> Any:
    parts = _strings(raw, little)
    if isinstance(parts, str):
        return int(float(parts)) if parts else None
    return [int(float(p)) for p in parts if p] or None


def _binary(code: str) -> Callable[[bytes, bool], Any]:
    size = struct.calcsize(code)

    def convert(raw: bytes, little: bool) -> Any:
        count = len(raw) // size
        numbers = struct.unpack(("<" if little else ">") + code * count, raw[: count * size])
        return numbers[0] if count == 1 else (list(numbers) or None)

    return convert


_CONVERTERS: dict[str, Callable[[bytes, bool], Any]] = {
    **dict.fromkeys(("AE", "AS", "CS", "DA", "DT", "TM", "UI"), _strings),
    "DS": _decimals,
    "IS": _integers,
    **{vr: _binary(code) for vr, code in
       (("US", "H"), ("SS", "h"), ("UL", "I"), ("SL", "i"), ("FL", "f"), ("FD", "d"))},
}
"""Converters for VRs whose bytes are ASCII or plain numbers; every other VR (LO, SH, PN...
which depend on the character set, sequences) goes through pydicom."""


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
