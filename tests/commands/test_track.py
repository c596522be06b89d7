"""``medseq track`` through the Typer app, in process."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseq.cli import app
from tests.tracking.cache_factory import CacheBuilder, Disc, Scan

runner = CliRunner()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    builder = CacheBuilder(tmp_path_factory.mktemp("cache"))
    builder.add("P1", Scan((Disc((-10.0, 0.0, 0.0), 30.0),), days=0),
                Scan((Disc((-10.0, 0.0, 0.0), 18.0),), days=42))
    builder.add("P2", Scan((), days=0, has_mask=False), Scan((), days=30, has_mask=False))
    return builder.write()


def test_track_writes_outputs(cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["track", str(cache), "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "P2: no lesion mask: not tracked" in result.stderr
    assert "tracked 1 of 2 patient(s)" in result.stderr
    for name in ("lesions.csv", "response.csv", "tracks.json"):
        assert (out / name).is_file()
    with (out / "response.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["patient_id"], r["timepoint"], r["response"]) for r in rows] == [
        ("P1", "0", ""), ("P1", "1", "PR")]


def test_track_json_on_stdout(cache: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["track", str(cache), "-o", str(tmp_path / "o"), "--json",
                                 "--min-volume", "0.1"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1
    assert doc["settings"]["min_volume_ml"] == 0.1
    patients = {p["patient_id"]: p for p in doc["patients"]}
    assert patients["P1"]["best_overall_response"] == "PR"
    assert patients["P1"]["responder"] is True
    assert patients["P2"]["tracked"] is False
    assert doc == json.loads((tmp_path / "o" / "tracks.json").read_text())


def test_broken_cache_exits_2_with_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    result = runner.invoke(app, ["track", str(broken), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "manifest.json" in lines[0]
    assert not (tmp_path / "o" / "lesions.csv").exists()


def test_missing_mask_file_exits_2(cache: Path, tmp_path: Path) -> None:
    builder = CacheBuilder(tmp_path / "c")
    builder.add("P1", Scan((Disc((0.0, 0.0, 0.0), 20.0),), days=0))
    built = builder.write()
    (built / "P1" / "t00_mask_native.nii.gz").write_bytes(b"")
    result = runner.invoke(app, ["track", str(built), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "t00_mask_native.nii.gz" in result.stderr


def test_missing_lesion_info_is_a_usage_error(cache: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["track", str(cache), "-o", str(tmp_path / "o"),
                                 "--lesion-info", str(tmp_path / "nope.csv")])
    assert result.exit_code == 1
    assert "--lesion-info file not found" in result.stderr


def test_shard_tracks_part_of_the_cache(cache: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["track", str(cache), "-o", str(tmp_path / "o"), "--json",
                                 "--shard", "2/2"])
    assert result.exit_code == 0, result.stderr
    assert [p["patient_id"] for p in json.loads(result.stdout)["patients"]] == ["P2"]


def test_missing_input_path_exits_2_like_every_command(tmp_path: Path) -> None:
    missing, out = tmp_path / "nowhere", tmp_path / "o"
    result = CliRunner().invoke(app, ["track", str(missing), "-o", str(out)])
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("nowhere: no such file or folder")
    assert not out.exists()
