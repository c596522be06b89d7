"""Discovery's pydicom-free header reader gives read_header's record, or steps aside."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from medseq.io.dicom import HEADER_TAGS, header_fields, read_header
from medseq.io.header_scan import HEADER_TAG_TABLE, scan_record
from medseq.io.two_process import map_in_two
from tests.dicom_factory import write_enhanced, write_series

REPO = Path(__file__).resolve().parents[2]


def reference(path: Path) -> object:
    return header_fields(read_header(path))


def test_tag_table_is_header_tags_with_pydicom_dictionary_vrs() -> None:
    assert [keyword for keyword, _ in HEADER_TAG_TABLE.values()] == list(HEADER_TAGS)
    for tag, (keyword, vr) in HEADER_TAG_TABLE.items():
        assert tag_for_keyword(keyword) == tag, keyword
        assert dictionary_VR(tag) == vr, keyword


def test_same_record_as_read_header_on_every_pydicom_test_file() -> None:
    used = 0
    for name in sorted(get_testdata_files()):
        path = Path(name)
        if not path.is_file():
            continue
        record = scan_record(path)
        if record is None:
            continue
        used += 1
        ref = reference(path)
        assert record == ref, path.name
        assert record.filename == ref.filename == str(path)  # type: ignore[attr-defined]
    assert used >= 20  # the common files are read without pydicom


def test_same_record_for_written_series_in_both_native_syntaxes(tmp_path: Path) -> None:
    for syntax in (ImplicitVRLittleEndian, pydicom.uid.ExplicitVRLittleEndian):
        paths = write_series(tmp_path / syntax, shape=(6, 5, 3), modality="MR",
                             series_description="T1 Ünïcode", edit=_private_block)
        for path in paths:
            record = scan_record(path)
            assert record is not None
            assert record == reference(path)


def _private_block(k: int, ds: pydicom.Dataset) -> None:
    """A 100 KiB private block after group 0028: longer than the first read."""
    ds.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")
    ds.add_new(0x00291010, "OB", bytes(range(256)) * 400)


def test_trailing_elements_after_the_pixels_are_walked(tmp_path: Path) -> None:
    def edit(k: int, ds: pydicom.Dataset) -> None:
        ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 64)  # DataSetTrailingPadding

    path = write_series(tmp_path, shape=(6, 5, 1), edit=edit)[0]
    record = scan_record(path)
    assert record is not None
    assert record == reference(path)


def test_steps_aside_for_everything_else(tmp_path: Path) -> None:
    def latin_extension(k: int, ds: pydicom.Dataset) -> None:
        ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]

    cases = {
        "big endian": write_series(tmp_path / "big", shape=(4, 3, 1),
                                   transfer_syntax=ExplicitVRBigEndian)[0],
        "deflated": write_series(tmp_path / "dfl", shape=(4, 3, 1),
                                 transfer_syntax=DeflatedExplicitVRLittleEndian)[0],
        "no preamble": write_series(tmp_path / "bare", shape=(4, 3, 1), preamble=False)[0],
        "enhanced": write_enhanced(tmp_path / "enh.dcm", shape=(4, 3, 2)),
        "character set with code extensions": write_series(
            tmp_path / "iso2022", shape=(4, 3, 1), edit=latin_extension)[0],
    }
    truncated = write_series(tmp_path / "cut", shape=(4, 3, 1))[0]
    truncated.write_bytes(truncated.read_bytes()[:-5])
    cases["truncated pixels"] = truncated
    stripped = write_series(tmp_path / "strip", shape=(4, 3, 1))[0]
    ds = pydicom.dcmread(stripped)
    del ds.PixelData
    ds.save_as(stripped)
    cases["stripped pixels"] = stripped
    (tmp_path / "empty").write_bytes(b"")
    cases["empty"] = tmp_path / "empty"
    cases["missing"] = tmp_path / "missing"
    rle = write_series(tmp_path / "rle", shape=(4, 3, 1))[0]
    ds = pydicom.dcmread(rle)
    ds.compress(RLELossless)
    ds.save_as(rle)
    cases["compressed"] = rle
    for what, path in cases.items():
        assert scan_record(path) is None, what


def test_discovery_reads_common_files_without_importing_pydicom(tmp_path: Path) -> None:
    write_series(tmp_path / "export", shape=(6, 5, 4))
    code = ("import sys; from pathlib import Path; from medseq.io.discover import discover; "
            "c = discover(Path(sys.argv[1])); "
            "assert c.patients[0].timepoints[0].image.file_count == 4; "
            "print('pydicom' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "export")],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stdout.strip() == "False"


# -- two processes ---------------------------------------------------------------------------


def _square(n: int) -> int:
    return n * n


def test_map_in_two_gives_the_plain_loop_in_order() -> None:
    seen: list[int] = []
    items = list(range(101))
    assert list(map_in_two(_square, items, progress=seen.append, every=10)) == [
        n * n for n in items]
    assert seen[-1] == 101
    assert seen[:-1] == list(range(10, 51, 10))


def test_map_in_two_does_the_half_of_a_failed_child_itself() -> None:
    parent = os.getpid()

    def fails_in_child(n: int) -> int:
        if os.getpid() != parent:
            raise RuntimeError("child failure")
        return n + 1

    assert list(map_in_two(fails_in_child, list(range(20)))) == list(range(1, 21))


def _children() -> set[str]:
    """This process's children, zombies included (other tests may have left their own)."""
    me = os.getpid()
    return set(Path(f"/proc/{me}/task/{me}/children").read_text().split())


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_map_in_two_abandoned_early_leaves_no_child() -> None:
    before = _children()
    results = map_in_two(_square, list(range(1000)))
    assert next(results) == 0
    assert _children() - before  # the child is running
    results.close()  # the child is stopped and reaped
    assert not _children() - before


def test_sop_class_only_in_the_file_meta_is_read_header_s(tmp_path: Path) -> None:
    path = write_series(tmp_path, shape=(4, 3, 1))[0]
    ds = pydicom.dcmread(path)
    del ds.SOPClassUID
    ds.save_as(path)
    assert "SOPClassUID" not in pydicom.dcmread(path, stop_before_pixels=True)
    ref = reference(path)
    assert ref["SOPClassUID"]  # type: ignore[index]
    assert scan_record(path) in (None, ref)
