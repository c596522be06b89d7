"""A fast reader for the common shape of DICOM header: a little-endian dataset, plain values.

pydicom's reader costs about 0.25-0.5 ms per file, most of the time it takes to load a CT
series or to scan a tree. Files from scanners and PACS exports are nearly always a preamble,
explicit file meta, then an implicit or explicit VR little-endian dataset (compressed pixel
data included) whose wanted elements are plain values. For those, this module walks the
elements of one bytes buffer and hands the wanted ones to pydicom as raw, unconverted elements,
so every value is still converted by pydicom and reads exactly as ``dcmread`` would give it.
Anything else (no preamble, big endian, deflated, a wanted sequence, an undefined length, a
header longer than the buffer) returns ``None`` and the caller falls back to ``pydicom.dcmread``.

The walk itself (:func:`walk_header`) needs no pydicom, so ``medseq scan`` can read the headers
of a whole tree without importing it (:mod:`medseq.io.header_scan`).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pydicom.uid import UID

__all__ = ["FAST_HEADER_BYTES", "RawHeader", "parse_header", "walk_header"]

FAST_HEADER_BYTES = 64 * 1024
"""How much of a file to read for the fast path; headers with big private blocks fall back."""

_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_EXPLICIT = struct.Struct("<HH2sH").unpack_from
_IMPLICIT = struct.Struct("<HHI").unpack_from
_U32 = struct.Struct("<I").unpack_from
_IMPLICIT_LE = "1.2.840.10008.1.2"
_OTHER_ENCODINGS = frozenset({
    "1.2.840.10008.1.2.2",  # explicit VR big endian
    "1.2.840.10008.1.2.1.99",  # deflated explicit VR little endian
    "1.2.840.10008.1.2.8.1",  # deflated image frame compression: treat as unknown
})
_PIXEL_DATA = 0x7FE00010
_TRANSFER_SYNTAX = 0x00020010
_UNDEFINED = 0xFFFFFFFF
RawElements = dict[int, tuple[str | None, bytes, int]]
"""Tag -> ``(VR or None when implicit, value bytes, value offset in the buffer)``."""


@dataclass(frozen=True)
class RawHeader:
    """What :func:`walk_header` found: raw values, nothing converted."""

    meta: RawElements
    elements: RawElements
    implicit: bool
    syntax: str
    where: int | None
    """Pixel element offset, None (no pixels: the buffer is the whole file), or ``-position``
    when the walk stopped at ``last_group``."""


def parse_header(buf: bytes, *, wanted: Collection[int], sequences: Collection[int],
                 whole_file: bool, last_group: int | None = None
                 ) -> tuple[Dataset, int | None] | None:
    """The wanted elements of ``buf`` (a file's first bytes) and the pixel element's offset.

    Args:
        buf: The start of the file, with the 128-byte preamble and ``DICM``.
        wanted: Tags to keep (others are skipped unread).
        sequences: Wanted tags that hold sequences; finding one means falling back.
        whole_file: ``buf`` holds the whole file, so a dataset without pixel data is complete.
        last_group: Stop at the first element of a later group (before the pixel data) and
            return ``(dataset, -position)``: the caller finds the pixel element itself (long
            private groups after the wanted ones are then never walked).

    Returns:
        ``(dataset, pixel offset or None)``, ``(dataset, -stop position)`` when stopped at
        ``last_group``, or ``None`` when this file needs pydicom or a longer ``buf``.
    """
    raw = walk_header(buf, wanted=wanted, sequences=sequences, whole_file=whole_file,
                      last_group=last_group)
    if raw is None:
        return None
    return _dataset(raw), raw.where


def walk_header(buf: bytes, *, wanted: Collection[int], sequences: Collection[int],
                whole_file: bool, last_group: int | None = None) -> RawHeader | None:
    """:func:`parse_header`'s walk, without pydicom: the raw wanted elements, or None."""
    if len(buf) < 144 or buf[128:132] != b"DICM":
        return None
    meta, pos = _file_meta(buf)
    if meta is None:
        return None
    syntax_element = meta.get(_TRANSFER_SYNTAX)
    if syntax_element is None:
        return None
    syntax = syntax_element[1].rstrip(b"\x00 ").decode("ascii", "replace")
    if syntax in _OTHER_ENCODINGS:
        return None
    implicit = syntax == _IMPLICIT_LE  # every other syntax encodes explicit VR little endian
    stop_tag = ((last_group + 1) << 16) if last_group is not None else None
    elements: RawElements = {}
    end = len(buf)
    while pos + 8 <= end:
        if implicit:
            group, elem, length = _IMPLICIT(buf, pos)
            vr_text: str | None = None
            start = pos + 8
        else:
            group, elem, vr, length = _EXPLICIT(buf, pos)
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    return None
                length = _U32(buf, pos + 8)[0]
                start = pos + 12
            else:
                start = pos + 8
            vr_text = vr.decode("ascii", "replace")
        tag = (group << 16) | elem
        if tag == _PIXEL_DATA:
            return RawHeader(meta, elements, implicit, syntax, pos)
        if stop_tag is not None and tag >= stop_tag:
            return RawHeader(meta, elements, implicit, syntax, -pos)
        if tag in wanted and (vr_text == "SQ" or tag in sequences or length == _UNDEFINED):
            return None
        if length == _UNDEFINED:
            # An unwanted sequence (private ones often) of undefined length: skip its items.
            # (UN of undefined length holds implicit VR little endian, whatever the syntax.)
            skipped = _skip_undefined(buf, start, implicit or vr_text == "UN")
            if skipped is None:
                return None
            pos = skipped
            continue
        stop = start + length
        if tag in wanted:
            if stop > end:
                return None
            elements[tag] = (vr_text, buf[start:stop], start)
        pos = stop
    if whole_file and pos == end:
        return RawHeader(meta, elements, implicit, syntax, None)
    return None


_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD


def _skip_undefined(buf: bytes, pos: int, implicit: bool) -> int | None:
    """Position after the undefined-length value starting at ``pos`` (items up to the
    sequence delimiter, nested sequences included); None when ``buf`` ends first."""
    end = len(buf)
    while pos + 8 <= end:
        group, elem, length = _IMPLICIT(buf, pos)
        tag = (group << 16) | elem
        pos += 8
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            return None  # not a sequence of items (e.g. encapsulated data): let pydicom read
        if length != _UNDEFINED:
            pos += length
            continue
        while True:  # the elements of an undefined-length item, up to its delimiter
            if pos + 8 > end:
                return None
            group, elem, length = _IMPLICIT(buf, pos)
            if (group << 16) | elem == _ITEM_END:
                pos += 8
                break
            if not implicit:
                vr = buf[pos + 4:pos + 6]
                if vr in _LONG_VRS:
                    if pos + 12 > end:
                        return None
                    length = _U32(buf, pos + 8)[0]
                    pos += 12
                else:
                    length = _EXPLICIT(buf, pos)[3]
                    pos += 8
            else:
                pos += 8
            if length == _UNDEFINED:
                skipped = _skip_undefined(buf, pos, implicit)
                if skipped is None:
                    return None
                pos = skipped
            else:
                pos += length
    return None


def _file_meta(buf: bytes) -> tuple[RawElements | None, int]:
    """Group 0002 (always explicit VR little endian), and where the dataset starts."""
    pos = 132
    meta: RawElements = {}
    while pos + 8 <= len(buf):
        group, elem, vr, length = _EXPLICIT(buf, pos)
        if group != 0x0002:
            return meta, pos
        if vr in _LONG_VRS:
            length = _U32(buf, pos + 8)[0]
            start = pos + 12
        else:
            start = pos + 8
        if length == _UNDEFINED or start + length > len(buf):
            return None, pos
        meta[(group << 16) | elem] = (vr.decode("ascii", "replace"), buf[start:start + length],
                                      start)
        pos = start + length
    return None, pos


@functools.lru_cache(maxsize=64)
def _syntax_uid(raw: bytes) -> UID:
    from pydicom.uid import UID

    return UID(raw.rstrip(b"\x00 ").decode("ascii", "replace"))


def _dataset(raw: RawHeader) -> Dataset:
    from pydicom.dataelem import DataElement, RawDataElement
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.tag import BaseTag

    implicit = raw.implicit
    meta: dict[BaseTag, DataElement | RawDataElement] = {}
    for tag, (vr, value, start) in raw.meta.items():
        key = BaseTag(tag)
        if tag == _TRANSFER_SYNTAX:
            # Converted once per distinct syntax: read on every file, pydicom's conversion and
            # validation of it would cost more than the rest of the header.
            meta[key] = DataElement(key, "UI", _syntax_uid(value))
        else:
            meta[key] = RawDataElement(key, vr, len(value), value, start, False, True)
    elements: dict[BaseTag, DataElement | RawDataElement] = {
        BaseTag(tag): RawDataElement(BaseTag(tag), vr, len(value), value, start, implicit, True)
        for tag, (vr, value, start) in raw.elements.items()}
    ds = Dataset(elements)
    ds.file_meta = FileMetaDataset(meta)
    ds.set_original_encoding(implicit, True, None)
    return ds
