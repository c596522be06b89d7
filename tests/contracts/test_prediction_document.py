"""The predict document: one writer, one reader, versions checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseq.contracts.prediction import (
    PatientPredictionDocument,
    PredictionFailure,
    read_prediction_lines,
    write_prediction,
    write_prediction_lines,
)
from medseq.errors import CacheError


def _doc() -> PatientPredictionDocument:
    return PatientPredictionDocument.model_validate({
        "patient_id": "Pabc", "layout": "nifti", "modality": "CT",
        "timepoints": [{"index": 0, "days": 0, "days_since_previous": 0,
                        "lesion_volume_ml": 4.0, "registration_ok": True}],
        "targets": ["L1"], "best_overall_response": "PR",
        "prediction": {"probability": 0.8, "class": "responder", "threshold": 0.5,
                       "observed_scans": 1, "forecast_ml": [1.5], "forecast_next_ml": 1.5},
        "model": {"run": "r1", "used": "all-patient model", "in_training_cohort": False},
        "medseq_version": "0.1.0",
    })


def test_round_trip_of_one_document_and_of_lines(tmp_path: Path) -> None:
    path = write_prediction(tmp_path / "one.json", _doc())
    data = json.loads(path.read_text())
    assert next(iter(data)) == "schema_version"
    assert data["prediction"]["class"] == "responder"
    assert read_prediction_lines(path) == [_doc()]
    lines = [_doc(), PredictionFailure(patient_id="Pdef", error="no lesion mask")]
    write_prediction_lines(tmp_path / "all.jsonl", lines)
    assert read_prediction_lines(tmp_path / "all.jsonl") == lines


def test_newer_or_unversioned_documents_are_refused_in_one_line(tmp_path: Path) -> None:
    path = write_prediction(tmp_path / "one.json", _doc())
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "schema_version": 2}))
    with pytest.raises(CacheError, match="newer than this medseq reads"):
        read_prediction_lines(path)
    del data["schema_version"]
    path.write_text(json.dumps(data))
    with pytest.raises(CacheError, match=r"no schema_version.*rerun medseq predict"):
        read_prediction_lines(path)
