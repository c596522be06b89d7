"""``medseq sample-data`` in-process through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from medseq.cli import app

runner = CliRunner()


def test_writes_a_cohort_and_reports_json(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(
        app,
        ["sample-data", str(out), "--patients", "2", "--timepoints", "2", "--lesions", "1-2",
         "--format", "nifti", "--seed", "4", "--json"],
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["schema_version"] == 1
    assert summary["patients"] == 2
    assert summary["scans"] == 4
    assert summary["nifti_patients"] == 2
    assert summary["generator"]["seed"] == 4
    assert (out / "ground_truth.json").is_file()
    assert "wrote 2 patients" in result.stderr


def test_refuses_a_non_empty_folder_without_force(tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    keep = out / "notes.txt"
    keep.write_text("mine")
    args = ["sample-data", str(out), "--patients", "1", "--timepoints", "2", "--lesions", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "not empty" in result.stderr
    assert "--force" in result.stderr
    assert not (out / "ground_truth.json").exists()
    result = runner.invoke(app, [*args, "--force"])
    assert result.exit_code == 0, result.stderr
    assert keep.read_text() == "mine"
    assert (out / "labels.csv").is_file()


def test_bad_ranges_are_usage_errors(tmp_path: Path) -> None:
    for option, value in (("--timepoints", "5-2"), ("--timepoints", "two"), ("--lesions", "0-3"),
                          ("--timepoints", "1")):
        result = runner.invoke(app, ["sample-data", str(tmp_path / "x"), option, value])
        assert result.exit_code == 1, (option, value)
        assert result.stderr.startswith("error:")
        assert "Traceback" not in result.stderr


def test_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    result = runner.invoke(app, ["sample-data", str(target)])
    assert result.exit_code == 1
    assert "not a folder" in result.stderr
