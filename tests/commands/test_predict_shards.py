"""``predict --all --shard K/N -o FILE`` then ``predict --merge FILE``: the lines of one process.

The model is replaced by a deterministic stand-in (a real one is trained in tests/test_pipeline.py);
one patient fails, so failure rows are merged too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from medseq.cli import app
from medseq.contracts.prediction import (
    ModelProvenance,
    PatientPredictionDocument,
    PredictionResult,
)
from medseq.errors import InputDataError
from tests.commands.test_predict import fake_run
from tests.io.discovery_files import write_nifti

runner = CliRunner()


def _fake_predict(cohort: Any, patient: Any, run: Any, *, keep_ids: bool,
                  timings: dict[str, float]) -> PatientPredictionDocument:
    from medseq.predict import _pseudonym

    if patient.patient_id == "PAT3":
        raise InputDataError("unusable scan")
    pid = patient.patient_id if keep_ids else _pseudonym(patient.patient_id, run.salt)
    score = (sum(map(ord, pid)) % 100) / 100
    return PatientPredictionDocument(
        patient_id=pid, layout="nifti", modality="CT", timepoints=[],
        prediction=PredictionResult.model_validate(
            {"probability": score, "class": "responder", "threshold": 0.5,
             "observed_scans": 2}),
        model=ModelProvenance(run=str(run.run_dir), used="all", in_training_cohort=False),
        medseq_version="test")


@pytest.fixture
def study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr("medseq.predict.predict_patient_of", _fake_predict)
    root = tmp_path / "study"
    for i in range(1, 6):
        for day in ("2024-01-10", "2024-03-10"):
            write_nifti(root / f"PAT{i}" / day / "image.nii.gz")
    return root


def _all(study: Path, run: Path, out: Path, *extra: str) -> None:
    result = runner.invoke(app, ["predict", str(study), "--model", str(run), "--all", "-o",
                                 str(out), *extra])
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("n", [1, 2, 4])
def test_merged_prediction_shards_equal_one_process(n: int, study: Path, tmp_path: Path
                                                    ) -> None:
    run = fake_run(tmp_path / "run")
    single = tmp_path / "single.jsonl"
    _all(study, run, single)
    assert len(single.read_text().splitlines()) == 5
    out = tmp_path / "sharded.jsonl"
    for k in range(1, n + 1):
        _all(study, run, out, "--shard", f"{k}/{n}")
    assert not out.exists()
    for _ in range(2):  # idempotent
        result = runner.invoke(app, ["predict", "--merge", str(out)])
        assert result.exit_code == 0, result.stderr
        assert out.read_bytes() == single.read_bytes()


def test_a_merge_with_a_missing_shard_names_its_patients(study: Path, tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run")
    out = tmp_path / "p.jsonl"
    _all(study, run, out, "--shard", "1/2", "--keep-ids")
    result = runner.invoke(app, ["predict", "--merge", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {out}: cannot merge: shards not finished: 2/2; "
                                    "missing patients: PAT")
    assert result.stderr.count("PAT") == 2
    assert not out.exists()


def test_shards_of_different_settings_are_refused(study: Path, tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run")
    out = tmp_path / "p.jsonl"
    out.write_text("kept\n")
    _all(study, run, out, "--shard", "1/2")
    _all(study, run, out, "--shard", "2/2", "--keep-ids")
    result = runner.invoke(app, ["predict", "--merge", str(out)])
    assert result.exit_code == 2
    assert "shards were made with different settings" in result.stderr
    assert "(model, input or options: 1/2; 2/2)" in result.stderr
    assert out.read_text() == "kept\n"
