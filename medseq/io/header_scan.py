"""Discovery's header reader: the plain record of a common file without importing pydicom.

``medseq scan`` reads thousands of headers and needs only :class:`HeaderRecord` values. For the
common file (preamble, native explicit or implicit VR little endian, plain values, pixel data
ending the file as the header announces) :func:`scan_record` walks the bytes
(:func:`~medseq.io.dicom_fast_header.walk_header`) and converts the values exactly as
:func:`medseq.io.header_record.header_record` does; every other file (and every file with
something to report: truncated, stripped, odd character set...) returns ``None`` and goes
through :func:`medseq.io.dicom.read_header`, which imports pydicom. The record is the same
either way (tests/io/test_header_scan.py checks it on every pydicom test file).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

from medseq.io.dicom_fast_header import FAST_HEADER_BYTES, RawHeader, walk_header
from medseq.io.header_record import NOT_FAST, HeaderRecord, raw_value, text_codec

__all__ = ["HEADER_TAG_TABLE", "scan_record"]

HEADER_TAG_TABLE: dict[int, tuple[str, str]] = {
    0x00080016: ("SOPClassUID", "UI"),
    0x00080018: ("SOPInstanceUID", "UI"),
    0x00080060: ("Modality", "CS"),
    0x00100020: ("PatientID", "LO"),
    0x0020000D: ("StudyInstanceUID", "UI"),
    0x0020000E: ("SeriesInstanceUID", "UI"),
    0x00200052: ("FrameOfReferenceUID", "UI"),
    0x00080020: ("StudyDate", "DA"),
    0x00080021: ("SeriesDate", "DA"),
    0x00080022: ("AcquisitionDate", "DA"),
    0x00080023: ("ContentDate", "DA"),
    0x00080030: ("StudyTime", "TM"),
    0x00080031: ("SeriesTime", "TM"),
    0x00080032: ("AcquisitionTime", "TM"),
    0x00081030: ("StudyDescription", "LO"),
    0x0008103E: ("SeriesDescription", "LO"),
    0x00200011: ("SeriesNumber", "IS"),
    0x00200013: ("InstanceNumber", "IS"),
    0x00080008: ("ImageType", "CS"),
    0x00180015: ("BodyPartExamined", "CS"),
    0x00200032: ("ImagePositionPatient", "DS"),
    0x00200037: ("ImageOrientationPatient", "DS"),
    0x00280030: ("PixelSpacing", "DS"),
    0x00180050: ("SliceThickness", "DS"),
    0x00180088: ("SpacingBetweenSlices", "DS"),
    0x00181120: ("GantryDetectorTilt", "DS"),
    0x00280010: ("Rows", "US"),
    0x00280011: ("Columns", "US"),
    0x00280008: ("NumberOfFrames", "IS"),
    0x52009229: ("SharedFunctionalGroupsSequence", "SQ"),
    0x52009230: ("PerFrameFunctionalGroupsSequence", "SQ"),
    0x00200012: ("AcquisitionNumber", "IS"),
    0x00180086: ("EchoNumbers", "IS"),
    0x00200100: ("TemporalPositionIdentifier", "IS"),
    0x00181060: ("TriggerTime", "DS"),
    0x00189087: ("DiffusionBValue", "FD"),
    0x00200105: ("NumberOfTemporalPositions", "IS"),
    0x00280002: ("SamplesPerPixel", "US"),
    0x00280004: ("PhotometricInterpretation", "CS"),
    0x00280100: ("BitsAllocated", "US"),
    0x00280101: ("BitsStored", "US"),
    0x00280102: ("HighBit", "US"),
    0x00280103: ("PixelRepresentation", "US"),
    0x00281053: ("RescaleSlope", "DS"),
    0x00281052: ("RescaleIntercept", "DS"),
    0x00281054: ("RescaleType", "LO"),
    0x00041220: ("DirectoryRecordSequence", "SQ"),
}
"""Tag -> (keyword, dictionary VR) of :data:`medseq.io.dicom.HEADER_TAGS`, in that order
(a test checks both against pydicom's dictionary)."""

_CHARACTER_SET = 0x00080005
_WANTED = frozenset(HEADER_TAG_TABLE) | {_CHARACTER_SET}
_SEQUENCES = frozenset(tag for tag, (_, vr) in HEADER_TAG_TABLE.items() if vr == "SQ")
_NATIVE = {"1.2.840.10008.1.2": 8, "1.2.840.10008.1.2.1": 12}
"""Native little-endian syntaxes handled here -> bytes of the pixel element's header."""
_LAST_CLASSIC_GROUP = 0x0028
_LONGER_HEADER_BYTES = 1024 * 1024


def scan_record(path: str | os.PathLike[str]) -> HeaderRecord | None:
    """``header_fields(read_header(path))`` for a common, intact file; None for any other.

    Never raises for a bad file: errors and unusual files are for :func:`read_header`.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        head = os.read(fd, FAST_HEADER_BYTES)
        if size == 0 or head[128:132] != b"DICM":
            return None
        raw = _walk(head, size)
        if raw is None and len(head) < size:  # a header longer than the first read
            os.lseek(fd, 0, os.SEEK_SET)
            head = os.read(fd, _LONGER_HEADER_BYTES)
            raw = _walk(head, size)
        if raw is None or raw.where is None or raw.syntax not in _NATIVE:
            return None  # no pixel data (a non-image object, or stripped), or compressed
        record = _record(raw, os.fspath(path))
        if record is None:
            return None
        element = _NATIVE[raw.syntax]
        needed = _native_pixel_bytes(record)
        if needed is None:
            return None
        offset: int | None = raw.where
        if raw.where < 0:  # stopped after group 0028: the pixel element must end the file
            offset = _pixel_element_at_end(fd, raw.implicit, size, -raw.where, needed)
            if offset is None:  # something else follows: walk on to the pixel data
                raw = walk_header(head, wanted=_WANTED, sequences=_SEQUENCES,
                                  whole_file=len(head) >= size)
                if raw is None or raw.where is None:
                    return None
                record = _record(raw, os.fspath(path))
                if record is None:
                    return None
                offset = raw.where
        if offset is None or size - offset - element < needed:
            return None  # truncated pixel data: read_header reports it
        return record
    except (OSError, struct.error):
        return None
    finally:
        os.close(fd)


def _walk(head: bytes, size: int) -> RawHeader | None:
    return walk_header(head, wanted=_WANTED, sequences=_SEQUENCES, whole_file=len(head) >= size,
                       last_group=_LAST_CLASSIC_GROUP)


def _record(raw: RawHeader, filename: str) -> HeaderRecord | None:
    """The :class:`HeaderRecord` ``header_record`` makes of the same elements, or None."""
    charset = raw.elements.get(_CHARACTER_SET)
    codec = text_codec(charset[1] if charset is not None else None)
    values: dict[str, Any] = {}
    for tag, (vr, value_bytes, _) in raw.elements.items():
        entry = HEADER_TAG_TABLE.get(tag)
        if entry is None:
            continue
        keyword, dictionary_vr = entry
        if vr is None or vr == "UN":
            vr = dictionary_vr
        value = raw_value(vr, value_bytes, True, codec)
        if value is NOT_FAST:
            return None
        if value is not None and value != "" and value != []:
            values[keyword] = value
    if "SOPClassUID" not in values:
        return None  # taken from the file meta by pydicom's conversion
    return HeaderRecord(values, filename=filename)


def _native_pixel_bytes(record: HeaderRecord) -> int | None:
    """Bytes of native pixel data one plain single frame announces; None when unusual."""
    if "NumberOfFrames" in record:
        return None
    rows, columns = record.get("Rows"), record.get("Columns")
    bits, samples = record.get("BitsAllocated"), record.get("SamplesPerPixel", 1)
    if not all(type(v) is int and v > 0 for v in (rows, columns, bits, samples)):
        return None
    if str(record.get("PhotometricInterpretation") or "").endswith("_422"):
        return None
    return (rows * columns * samples * bits + 7) // 8  # type: ignore[operator]


def _pixel_element_at_end(fd: int, implicit: bool, size: int, after: int, needed: int
                          ) -> int | None:
    """Offset of the native pixel element if it ends the file exactly as the header says."""
    def read_at(offset: int) -> bytes:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, 12)

    return pixel_element_offset(read_at, implicit=implicit, size=size, after=after,
                                needed=needed)


def pixel_element_offset(read_at: Callable[[int], bytes], *, implicit: bool, size: int,
                         after: int, needed: int) -> int | None:
    """Offset of a native pixel element of ``needed`` bytes that ends a file of ``size`` bytes
    after offset ``after``; None when the file does not end that way. ``read_at(offset)``
    returns the 12 bytes at ``offset``."""
    needed += needed % 2  # values are padded to an even length
    start = size - needed - (8 if implicit else 12)
    if start < after:
        return None
    element = read_at(start)
    if element[:4] != b"\xe0\x7f\x10\x00":
        return None
    if implicit:
        length = struct.unpack_from("<I", element, 4)[0]
    elif element[4:6] in (b"OW", b"OB") and element[6:8] == b"\x00\x00":
        length = struct.unpack_from("<I", element, 8)[0]
    else:
        return None
    return start if length == needed else None
