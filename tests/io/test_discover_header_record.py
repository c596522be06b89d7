"""The plain header records discovery works on hold the values pydicom gives."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medseq.io.dicom import HEADER_TAGS, read_header
from medseq.io.header_record import HeaderRecord, header_record
from tests.dicom_factory import write_enhanced, write_series


def _plain(value: object) -> object:
    if type(value).__name__ == "MultiValue":
        return [_plain(v) for v in value]  # type: ignore[attr-defined]
    if type(value).__name__ in ("DSfloat", "DSdecimal"):
        return float(value)  # type: ignore[arg-type]
    if type(value).__name__ == "IS":
        return int(value)  # type: ignore[call-overload]
    if type(value).__name__ == "UID":
        return str(value)
    return value


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                                    ExplicitVRBigEndian])
@pytest.mark.parametrize("preamble", [True, False])
def test_record_values_equal_pydicom_values(tmp_path: Path, syntax: str, preamble: bool) -> None:
    path = write_series(tmp_path, shape=(4, 3, 1), transfer_syntax=syntax, preamble=preamble,
                        series_description="Thorax ÄÖ 1.0", orientation=(1, 0, 0, 0, 0.6, -0.8),
                        extra={"SpacingBetweenSlices": "1.25"})[0]
    record = header_record(read_header(path), HEADER_TAGS)
    assert isinstance(record, HeaderRecord)
    reference = read_header(path)
    for keyword in HEADER_TAGS:
        value = reference.get(keyword)
        if value is None or value == "":
            assert keyword not in record, keyword
        else:
            assert record[keyword] == _plain(value), keyword
    assert record.filename == str(path)
    assert record["ImageOrientationPatient"] == [1.0, 0.0, 0.0, 0.0, 0.6, -0.8]
    assert record["Rows"] == 3
    assert record["SeriesDescription"] == "Thorax ÄÖ 1.0"


def test_enhanced_multiframe_headers_stay_datasets(tmp_path: Path) -> None:
    ds = read_header(write_enhanced(tmp_path / "enh.dcm", shape=(4, 3, 3)))
    assert header_record(ds, HEADER_TAGS) is ds
