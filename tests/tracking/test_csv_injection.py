"""CSV outputs open in spreadsheets as data: formula-like cells are escaped (OWASP)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseq.cli import app
from medseq.csv_cells import csv_text, safe_cell, unescape_cell
from tests.tracking.cache_factory import CacheBuilder, Disc, Scan

runner = CliRunner()
A = (-10.0, 0.0, 0.0)


@pytest.mark.parametrize(("value", "written"), [
    ("=1+2", "'=1+2"), ("@SUM(1)", "'@SUM(1)"), ("+cmd", "'+cmd"), ("-1+2", "'-1+2"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("P1", "P1"), ("-12.5", "-12.5"), ("+3", "+3"),
    ("-1e-3", "-1e-3"), ("", ""), (-4.0, -4.0), (None, None),
])
def test_safe_cell_escapes_formulas_not_numbers(value: object, written: object) -> None:
    assert safe_cell(value) == written
    if isinstance(value, str):
        assert unescape_cell(str(written)) == value


def test_keep_ids_formula_ids_are_escaped_in_lesions_and_response_csv(tmp_path: Path) -> None:
    builder = CacheBuilder(tmp_path / "cache")
    builder.add("=1+2", Scan((Disc(A, 30.0),), days=0), Scan((Disc(A, 18.0),), days=42))
    builder.add("@SUM(1)", Scan((Disc(A, 24.0),), days=0), Scan((Disc(A, 30.0),), days=42))
    cache = builder.write()
    # Lesion info names patients as lesions.csv writes them (escaped) and gives a formula organ.
    info = tmp_path / "info.csv"
    info.write_text("patient_id,timepoint,x,y,z,organ,nodal\n"
                    f"'=1+2,0,{A[0]},{A[1]},{A[2]},=HYPERLINK(\"http://x\"),no\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["track", str(cache), "-o", str(out), "--lesion-info", str(info)])
    assert result.exit_code == 0, result.stderr
    for name in ("lesions.csv", "response.csv"):
        text = (out / name).read_text()
        lines = text.splitlines()[1:]
        assert lines
        assert all(line.startswith(("'=1+2,", "'@SUM(1),")) for line in lines), text
        for row in csv.reader(lines):
            assert not any(cell.startswith(("=", "+", "@", "\t", "\r")) for cell in row), row
            assert not any(cell.startswith("-") and not _number(cell) for cell in row), row
    lesions = list(csv.DictReader((out / "lesions.csv").open()))
    assert {r["organ"] for r in lesions if r["patient_id"] == "'=1+2"} == {
        "'=HYPERLINK(\"http://x\")"}
    assert any(float(r["volume_change_pct"]) < 0 for r in lesions if r["volume_change_pct"])


def test_csv_text_quotes_and_escapes(tmp_path: Path) -> None:
    text = csv_text([["patient_id", "note"], ["=A1", 'say "hi", then'], ["x", -1.5]])
    assert text == 'patient_id,note\n\'=A1,"say ""hi"", then"\nx,-1.5\n'


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
