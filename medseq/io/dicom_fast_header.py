"""A fast reader for the common shape of DICOM header: a little-endian dataset, plain values.

pydicom's reader costs about 0.25-0.5 ms per file, most of the time it takes to load a CT
series or to scan a tree. Files from scanners and PACS exports are nearly always a preamble,
explicit file meta, then an implicit or explicit VR little-endian dataset (compressed pixel
data included) whose wanted elements are plain values. For those, this module walks the
elements of one bytes buffer and hands the wanted ones to pydicom as raw, unconverted elements,
so every value is still converted by pydicom and reads exactly as ``dcmread`` would give it.
Anything else (no preamble, big endian, deflated, a wanted sequence, an undefined length, a
header longer than the buffer) returns ``None`` and the caller falls back to ``pydicom.dcmread``.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Collection

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

__all__ = ["FAST_HEADER_BYTES", "parse_header"]

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
_TRANSFER_SYNTAX = BaseTag(0x00020010)
_UNDEFINED = 0xFFFFFFFF
_Elements = dict[BaseTag, DataElement | RawDataElement]


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
    if len(buf) < 144 or buf[128:132] != b"DICM":
        return None
    meta, pos = _file_meta(buf)
    if meta is None:
        return None
    syntax_element = meta.get(BaseTag(0x00020010))
    if syntax_element is None or syntax_element.value is None:
        return None
    syntax = syntax_element.value.rstrip(b"\x00 ").decode("ascii", "replace")
    if syntax in _OTHER_ENCODINGS:
        return None
    implicit = syntax == _IMPLICIT_LE  # every other syntax encodes explicit VR little endian
    stop_tag = ((last_group + 1) << 16) if last_group is not None else None
    elements: _Elements = {}
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
            return _dataset(elements, meta, implicit), pos
        if stop_tag is not None and tag >= stop_tag:
            return _dataset(elements, meta, implicit), -pos
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
            elements[BaseTag(tag)] = RawDataElement(BaseTag(tag), vr_text, length,
                                                    buf[start:stop], start, implicit, True)
        pos = stop
    if whole_file and pos == end:
        return _dataset(elements, meta, implicit), None
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


def _file_meta(buf: bytes) -> tuple[_Elements | None, int]:
    """Group 0002 (always explicit VR little endian), and where the dataset starts."""
    pos = 132
    meta: _Elements = {}
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
        tag = BaseTag((group << 16) | elem)
        meta[tag] = RawDataElement(tag, vr.decode("ascii", "replace"), length,
                                   buf[start:start + length], start, False, True)
        pos = start + length
    return None, pos


@functools.lru_cache(maxsize=64)
def _syntax_uid(raw: bytes) -> UID:
    return UID(raw.rstrip(b"\x00 ").decode("ascii", "replace"))


def _dataset(elements: _Elements, meta: _Elements, implicit: bool) -> Dataset:
    syntax = meta.get(_TRANSFER_SYNTAX)
    if type(syntax) is RawDataElement and syntax.value is not None:
        # Converted once per distinct syntax: read on every file, pydicom's conversion and
        # validation of it would cost more than the rest of the header.
        meta[_TRANSFER_SYNTAX] = DataElement(_TRANSFER_SYNTAX, "UI", _syntax_uid(syntax.value))
    ds = Dataset(elements)
    ds.file_meta = FileMetaDataset(meta)
    ds.set_original_encoding(implicit, True, None)
    return ds
