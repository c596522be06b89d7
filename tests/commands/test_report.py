"""`medseq report` in-process: writes one HTML file atomically, honours --patient and ids."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseq.cli import app
from tests.fake_run import skip_figure_rendering, write_fake_cache, write_fake_run

runner = CliRunner()


@pytest.fixture
def unrendered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Figures are tested in tests/report; here they are drawn but not rasterised."""
    skip_figure_rendering(monkeypatch)


def test_report_writes_html_and_prints_its_path(tmp_path: Path, unrendered: None) -> None:
    write_fake_cache(tmp_path / "cache", ["p000", "p001"])
    write_fake_run(tmp_path / "run", n_patients=10, cache=tmp_path / "cache")
    out = tmp_path / "out" / "r.html"
    assert runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--bootstrap", "100"]
                         ).exit_code == 0
    result = runner.invoke(app, ["report", str(tmp_path / "run"), "-o", str(out),
                                 "--patient", "p001"])
    assert result.exit_code == 0, result.stderr
    assert "evaluating now" not in result.stderr  # the stored evaluation.json is read
    assert result.stdout.strip() == str(out)
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "Patient p001" in html
    assert "Patient p000" not in html
    assert str(tmp_path) not in html  # no paths without --keep-ids
    assert [p.name for p in out.parent.iterdir()] == ["r.html"]


def test_report_keep_ids_shows_paths(tmp_path: Path, unrendered: None) -> None:
    write_fake_run(tmp_path / "run", n_patients=8)
    result = runner.invoke(app, ["report", str(tmp_path / "run"), "--keep-ids",
                                 "--max-patients", "1"])
    assert result.exit_code == 0, result.stderr
    html = (tmp_path / "run" / "report.html").read_text()
    assert str((tmp_path / "run").resolve()) in html


def test_report_of_a_missing_run_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")


def test_report_unknown_patient_is_a_usage_error(tmp_path: Path) -> None:
    write_fake_run(tmp_path / "run", n_patients=8)
    result = runner.invoke(app, ["report", str(tmp_path / "run"), "--patient", "zzz"])
    assert result.exit_code == 1
    assert "zzz" in result.stderr
