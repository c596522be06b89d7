"""The cache manifest contract: validated reads, atomic writes, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseq import __version__
from medseq.contracts.cache import (
    SCHEMA_VERSION,
    CacheManifest,
    PatientRecord,
    PatientStatus,
    TimepointRecord,
    read_manifest,
    read_patient_record,
    write_manifest,
    write_patient_record,
)
from medseq.errors import CacheError


def _manifest() -> CacheManifest:
    tp = TimepointRecord(
        index=0, days=0, days_since_previous=0, file_count=3, content_hash="abc",
        image="P1/t00_image.nii",
    )
    patients = {
        "P1": PatientRecord(patient_id="P1", timepoints=[tp]),
        "P0": PatientRecord(patient_id="P0", status="failed", error="bad"),
    }
    return CacheManifest(
        medseq_version=__version__, config={"a": 1}, config_hash="sha256:x", patients=patients
    )


def test_round_trip_and_ok_patients(tmp_path: Path) -> None:
    write_manifest(tmp_path, _manifest())
    loaded = read_manifest(tmp_path)
    assert loaded == _manifest()
    assert [p.patient_id for p in loaded.ok_patients()] == ["P1"]
    assert loaded.patients["P1"].timepoints[0].transform_to_baseline[0] == [1.0, 0.0, 0.0, 0.0]


def test_missing_manifest_says_run_preprocess(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="run medseq preprocess"):
        read_manifest(tmp_path)


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    data = json.loads(_manifest().model_dump_json())
    data["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(CacheError, match="schema version"):
        read_manifest(tmp_path)


def test_invalid_and_unreadable_manifests_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CacheError, match="unreadable manifest"):
        read_manifest(tmp_path)
    data = json.loads(_manifest().model_dump_json())
    data["patients"]["P1"]["timepoints"][0]["days"] = "soon"
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(CacheError) as info:
        read_manifest(tmp_path)
    assert "patients.P1.timepoints.0.days" in str(info.value)
    assert "\n" not in str(info.value)


def test_newer_schema_version_is_refused_in_one_line(tmp_path: Path) -> None:
    data = json.loads(_manifest().model_dump_json())
    data["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(CacheError) as info:
        read_manifest(tmp_path)
    assert "newer than this medseq reads" in str(info.value)
    assert "manifest.json" in str(info.value)
    assert "\n" not in str(info.value)


def test_manifest_without_schema_version_says_how_to_regenerate(tmp_path: Path) -> None:
    data = json.loads(_manifest().model_dump_json())
    del data["schema_version"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(CacheError, match="rerun medseq preprocess into a new cache folder"):
        read_manifest(tmp_path)


def test_written_manifest_starts_with_schema_version(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, _manifest())
    assert next(iter(json.loads(path.read_text()))) == "schema_version"
    assert read_manifest(tmp_path).patients["P0"].status is PatientStatus.FAILED


def test_patient_record_round_trip_and_older_records(tmp_path: Path) -> None:
    record = _manifest().patients["P1"]
    path = write_patient_record(tmp_path, record)
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION
    assert read_patient_record(path) == record
    # a record written before patient.json was versioned has the same shape: read as version 1
    path.write_text(record.model_dump_json())
    assert read_patient_record(path) == record
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1,
                                **json.loads(record.model_dump_json())}))
    with pytest.raises(CacheError, match="newer than this medseq reads"):
        read_patient_record(path)


def test_unknown_status_is_refused(tmp_path: Path) -> None:
    data = json.loads(_manifest().model_dump_json())
    data["patients"]["P1"]["status"] = "maybe"
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(CacheError, match=r"patients\.P1\.status"):
        read_manifest(tmp_path)
