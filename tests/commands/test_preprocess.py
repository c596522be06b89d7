"""`medseq preprocess` through the CLI: exit codes, JSON summary, progress and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseq.cli import app
from tests.preprocess.phantom import ScanSpec, rigid, write_manifest_cohort

runner = CliRunner()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli_cohort")
    motion = rigid((2, -3, 4), (5, 3, -6))
    return write_manifest_cohort(root, {
        "Smith^Ann": [ScanSpec(0), ScanSpec(40, motion, 1.2)],
        "Brown^Bob": [ScanSpec(0, motion), ScanSpec(70, None, 0.8)],
    }, labels={"Smith^Ann": 1, "Brown^Bob": 0})


def test_preprocess_json_summary_and_rerun(cohort: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = runner.invoke(app, ["preprocess", str(cohort), "-o", str(cache), "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["schema_version"] == 1
    assert summary["processed"] == 2
    assert summary["failed_count"] == 0
    assert summary["timepoints"] == 4
    assert summary["target_spacing"] == [4.0, 4.0, 5.0]
    assert "preprocess summary" in result.stderr
    assert "Smith" not in result.stderr + result.stdout
    assert (cache / "manifest.json").is_file()
    assert (cache / "salt.key").is_file()

    again = runner.invoke(app, ["preprocess", str(cohort), "-o", str(cache), "--json"])
    assert again.exit_code == 0
    assert json.loads(again.stdout)["skipped"] == 2


def test_preprocess_with_two_workers_and_keep_ids(cohort: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = runner.invoke(app, ["preprocess", str(cohort), "-o", str(cache), "--workers", "2",
                                 "--keep-ids", "--json"])
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((cache / "manifest.json").read_text())
    assert sorted(manifest["patients"]) == ["Brown^Bob", "Smith^Ann"]
    assert all(p["status"] == "ok" for p in manifest["patients"].values())


def test_failed_patient_exits_2_with_its_reason(cohort: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "input"
    shutil.copytree(cohort.parent, copy)
    (copy / "Brown^Bob" / "scan1" / "mask.nii.gz").write_bytes(b"\x00" * 10)
    result = runner.invoke(app, ["preprocess", str(copy / "manifest.csv"), "-o",
                                 str(tmp_path / "cache")])
    assert result.exit_code == 2
    assert "failed P" in result.stderr
    assert "Brown" not in result.stderr


def test_config_file_and_bad_options(cohort: Path, tmp_path: Path) -> None:
    config = tmp_path / "pre.yaml"
    config.write_text("crop_size: 16\ntarget_spacing: [5, 5, 5]\n")
    cache = tmp_path / "cache"
    result = runner.invoke(app, ["preprocess", str(cohort), "-o", str(cache), "--config",
                                 str(config), "--shard", "1/2", "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["selected"] == 1
    assert summary["shard"] == "1/2"
    assert summary["target_spacing"] == [5.0, 5.0, 5.0]

    bad = runner.invoke(app, ["preprocess", str(cohort), "-o", str(cache), "--shard", "3/2"])
    assert bad.exit_code == 1
    assert "--shard" in bad.stderr
    config.write_text("crop_sise: 16\n")
    bad = runner.invoke(app, ["preprocess", str(cohort), "-o", str(cache), "--config",
                              str(config)])
    assert bad.exit_code == 1
    assert "crop_sise" in bad.stderr
