"""The fast header reader gives exactly what pydicom gives, or steps aside."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_files
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian

from medseq.io.dicom import _HEADER_TAG_VALUES, _SEQUENCES, _WANTED, HEADER_TAGS, read_header
from medseq.io.dicom_fast_header import FAST_HEADER_BYTES, parse_header
from medseq.io.dicom_pixels import PIXEL_OFFSET_ATTRIBUTE
from tests.dicom_factory import write_enhanced, write_series


def fast(path: Path) -> tuple[pydicom.Dataset, int | None] | None:
    buf = path.read_bytes()[:FAST_HEADER_BYTES]
    return parse_header(buf, wanted=_WANTED, sequences=_SEQUENCES,
                        whole_file=len(buf) >= path.stat().st_size)


def pydicom_header(path: Path) -> tuple[pydicom.Dataset, int | None]:
    with open(path, "rb") as fp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True,
                             specific_tags=_HEADER_TAG_VALUES)
        offset = fp.tell()
        at_pixels = fp.read(4) == b"\xe0\x7f\x10\x00"
    return ds, offset if at_pixels else None


def test_same_values_and_pixel_offset_as_pydicom_on_real_files() -> None:
    used = 0
    for name in sorted(get_testdata_files()):
        path = Path(name)
        if not path.is_file():
            continue
        parsed = fast(path)
        if parsed is None:
            continue
        used += 1
        ds, offset = parsed
        ref, ref_offset = pydicom_header(path)
        assert offset == ref_offset, path.name
        assert set(ds.keys()) == set(ref.keys()), path.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about odd values on conversion
            for keyword in (*HEADER_TAGS, "SpecificCharacterSet"):
                assert ds.get(keyword) == ref.get(keyword), (path.name, keyword)
        assert ds.file_meta.TransferSyntaxUID == ref.file_meta.TransferSyntaxUID
    assert used >= 50  # the fast path covers most real files


def test_steps_aside_for_other_encodings_and_sequences(tmp_path: Path) -> None:
    big = write_series(tmp_path / "big", shape=(4, 3, 2), transfer_syntax=ExplicitVRBigEndian)
    deflated = write_series(tmp_path / "dfl", shape=(4, 3, 2),
                            transfer_syntax=DeflatedExplicitVRLittleEndian)
    bare = write_series(tmp_path / "bare", shape=(4, 3, 2), preamble=False)
    enhanced = write_enhanced(tmp_path / "enh.dcm", shape=(4, 3, 2))
    for path in (big[0], deflated[0], bare[0], enhanced):
        assert fast(path) is None, path
        assert read_header(path).Rows == 3  # read through pydicom instead


def test_read_header_records_the_pixel_offset(tmp_path: Path) -> None:
    path = write_series(tmp_path, shape=(4, 3, 2))[0]
    ds = read_header(path)
    _, ref_offset = pydicom_header(path)
    assert getattr(ds, PIXEL_OFFSET_ATTRIBUTE) == ref_offset


def _private_items(depth: int) -> pydicom.Sequence:
    item = pydicom.Dataset()
    item.is_undefined_length_sequence_item = True
    item.add_new(0x00190010, "LO", "GEMS_ACQU_01")
    item.add_new(0x00191001, "DS", "1.5")
    if depth:
        item.add_new(0x00191002, "SQ", _private_items(depth - 1))
        item[0x00191002].is_undefined_length = True
    return pydicom.Sequence([item, item])


def test_private_sequences_and_long_private_groups(tmp_path: Path) -> None:
    """An undefined-length private sequence before the wanted groups is skipped; a private
    block after them (longer than the first read) is never walked; values and the pixel
    offset stay pydicom's."""
    def edit(k: int, ds: pydicom.Dataset) -> None:
        ds.add_new(0x00190010, "LO", "GEMS_ACQU_01")
        ds.add_new(0x00191010, "SQ", _private_items(2))
        ds[0x00191010].is_undefined_length = True
        ds.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")
        ds.add_new(0x00291010, "OB", bytes(range(256)) * 400)  # 100 KiB

    path = write_series(tmp_path, shape=(6, 5, 1), modality="MR", edit=edit)[0]
    assert b"\xff\xff\xff\xff" in path.read_bytes()[:4096]  # an undefined length is there
    ds = read_header(path)
    ref, ref_offset = pydicom_header(path)
    assert getattr(ds, PIXEL_OFFSET_ATTRIBUTE) == ref_offset
    for keyword in HEADER_TAGS:
        assert ds.get(keyword) == ref.get(keyword), keyword
    whole = path.read_bytes()
    parsed = parse_header(whole, wanted=_WANTED, sequences=_SEQUENCES, whole_file=True)
    assert parsed is not None
    assert parsed[1] == ref_offset


def test_trailing_elements_after_the_pixels_are_walked(tmp_path: Path) -> None:
    def edit(k: int, ds: pydicom.Dataset) -> None:
        ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 64)  # DataSetTrailingPadding

    path = write_series(tmp_path, shape=(6, 5, 1), edit=edit)[0]
    _, ref_offset = pydicom_header(path)
    assert getattr(read_header(path), PIXEL_OFFSET_ATTRIBUTE) == ref_offset
