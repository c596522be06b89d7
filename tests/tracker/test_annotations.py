"""Lesion list / RECIST line CSVs: parsing, frames, and one-line errors against a cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseq.errors import InputDataError
from medseq.tracker.annotations import read_annotations, resolve_annotations
from tests.tracker.tiny_cache import grid_affine, write_tiny_cache

HEADER = "patient_id,timepoint,lesion,x_mm,y_mm,z_mm,long_axis_mm,x1,y1,z1,x2,y2,z2,frame\n"


def _csv(tmp_path: Path, rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "lesions.csv"
    path.write_text(header + rows)
    return path


def _centre_mm(voxel: tuple[float, float, float]) -> np.ndarray:
    affine = grid_affine()
    return affine[:3, :3] @ np.asarray(voxel) + affine[:3, 3]


def test_points_lines_and_lps(tmp_path: Path) -> None:
    rows = read_annotations(_csv(tmp_path, (
        "P000,0,A,1,2,3,15,,,,,,,\n"
        "P000,t00,B,,,,,0,0,0,3,4,0,\n"
        "P001,0,A,1,2,3,,,,,,,,lps\n")))
    a, b, c = rows
    assert (a.point_mm, a.long_axis_mm, a.line_mm) == ((1.0, 2.0, 3.0), 15.0, None)
    assert b.point_mm == (1.5, 2.0, 0.0)
    assert b.long_axis_mm == pytest.approx(5.0)
    assert c.point_mm == (-1.0, -2.0, 3.0)
    assert c.line == 4


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("P000,0,A,1,2,,,,,,,,,\n", "line 2: x_mm, y_mm, z_mm must all be numbers"),
        ("P000,0,A,,,,,1,1,1,1,1,1,\n", "line 2: the RECIST line has zero length"),
        ("P000,0,A,1,2,3,,1,1,1,2,2,2,\n", "line 2: give either"),
        ("P000,zero,A,1,2,3,,,,,,,,\n", "line 2: timepoint 'zero'"),
        ("P000,0,A,1,2,3,,,,,,,,XYZ\n", "line 2: frame 'XYZ'"),
        ("P000,0,A,1,2,3,-4,,,,,,,\n", "line 2: long_axis_mm must be a positive"),
        ("P000,0,A,1,2,3,,,,,,,,\nP000,0,A,1,2,3,,,,,,,,\n", "line 3: lesion 'A' already"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path: Path, rows: str, message: str) -> None:
    path = _csv(tmp_path, rows)
    with pytest.raises(InputDataError, match=message) as info:
        read_annotations(path)
    assert str(path) in str(info.value)


def test_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="need x_mm,y_mm,z_mm"):
        read_annotations(_csv(tmp_path, "P000,0,A\n", header="patient_id,timepoint,lesion\n"))


def test_resolve_against_cache(tmp_path: Path) -> None:
    cache = write_tiny_cache(tmp_path / "cache", patients=1, timepoints=2)
    inside = _centre_mm((20, 20, 10))
    text = ",".join(f"{v:.2f}" for v in inside)
    path = _csv(tmp_path, f"P000,0,A,{text},,,,,,,,\n")
    prompts = resolve_annotations(path, read_annotations(path), cache)
    (prompt,) = prompts["P000"]
    np.testing.assert_allclose(prompt.point_mm, inside, atol=0.01)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("P999,0", "line 2: patient P999 is not in the cache"),
        ("P000,5", "line 2: patient P000 has no timepoint 5"),
        ("P000,1", "line 2: timepoint 1 is a follow-up"),
    ],
)
def test_unknown_patient_or_timepoint(tmp_path: Path, where: str, message: str) -> None:
    cache = write_tiny_cache(tmp_path / "cache", patients=1, timepoints=2)
    path = _csv(tmp_path, f"{where},A,0,0,0,,,,,,,,\n")
    with pytest.raises(InputDataError, match=message):
        resolve_annotations(path, read_annotations(path), cache)


def test_points_outside_scan_or_body(tmp_path: Path) -> None:
    cache = write_tiny_cache(tmp_path / "cache", patients=1, timepoints=2)
    far = ",".join(f"{v:.1f}" for v in _centre_mm((80, 20, 10)))
    air = ",".join(f"{v:.1f}" for v in _centre_mm((1, 1, 10)))
    path = _csv(tmp_path, f"P000,0,A,{far},,,,,,,,\n")
    with pytest.raises(InputDataError, match=r"line 2: point .* is outside the scan"):
        resolve_annotations(path, read_annotations(path), cache)
    path = _csv(tmp_path, f"P000,0,A,,,,,{air},0,0,0,\n")
    with pytest.raises(InputDataError, match=r"line 2: point .* is outside the body"):
        resolve_annotations(path, read_annotations(path), cache)
