"""The --lesion-info CSV: parsing, errors, and original ids mapped to pseudonyms."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseq.errors import InputDataError
from medseq.tracking.lesion_info import read_lesion_info
from medseq.tracking.pipeline import track_cache
from tests.tracking.cache_factory import CacheBuilder, Disc, Scan


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "info.csv"
    path.write_text(text)
    return path


def test_rows_by_label_and_by_point(tmp_path: Path) -> None:
    info = read_lesion_info(_write(tmp_path, (
        "Patient_ID,Timepoint,Label,X,Y,Z,Organ,Nodal\n"
        "p1,0,2,,,,liver,no\n"
        "p1,t01,,1.5,-2,30,,yes\n"
        "p2,,4,,,,,\n")))
    first, second = info["p1"]
    assert (first.timepoint, first.label, first.organ, first.nodal) == (0, 2, "liver", False)
    assert (second.timepoint, second.point_mm, second.organ, second.nodal) == (
        1, (1.5, -2.0, 30.0), None, True)
    (third,) = info["p2"]
    assert (third.timepoint, third.label, third.nodal, third.line) == (0, 4, False, 4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timepoint,label\n0,1\n", "patient_id column"),
        ("patient_id,organ\np1,liver\n", "label column or x,y,z"),
        ("patient_id,label,nodal\np1,1,maybe\n", "line 2: nodal 'maybe'"),
        ("patient_id,label\np1,one\n", "line 2: label 'one'"),
        ("patient_id,timepoint,label\np1,first,1\n", "line 2: timepoint"),
        ("patient_id,label,x,y,z\np1,,1,2,\n", "line 2: give either label or x, y, z"),
        ("patient_id,label\n,1\n", "line 2: empty patient_id"),
    ],
)
def test_bad_files_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputDataError, match=message):
        read_lesion_info(_write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="cannot read lesion info"):
        read_lesion_info(tmp_path / "nope.csv")


def test_original_ids_map_through_the_pseudonym_key(tmp_path: Path) -> None:
    from medseq.preprocess.pseudonym import load_or_create_salt, pseudonym

    cache = tmp_path / "cache"
    cache.mkdir()
    key = load_or_create_salt(cache)
    alias = pseudonym("MRN-001", key)
    builder = CacheBuilder(cache)
    builder.add(alias, Scan((Disc((0.0, 0.0, 0.0), 20.0),), days=0))
    builder.write()
    info = _write(tmp_path, "patient_id,label,organ,nodal\nMRN-001,1,node,yes\n")
    (result,) = track_cache(cache, lesion_info=info)
    assert [(r.nodal, r.organ) for r in result.lesions] == [(True, "node")]
    unknown = _write(tmp_path, "patient_id,label\nMRN-999,1\n")
    with pytest.raises(InputDataError, match="patient MRN-999 is not in the cache"):
        track_cache(cache, lesion_info=unknown)
