"""The cache manifest contract: validated reads, atomic writes, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseq import __version__
from medseq.errors import CacheError
from medseq.preprocess.manifest import (
    SCHEMA_VERSION,
    CacheManifest,
    PatientRecord,
    TimepointRecord,
    read_manifest,
    write_manifest,
)


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
