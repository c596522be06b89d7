"""End to end: README's main command (scripts/demo.sh) on the bundled sample data.

preprocess -> track -> train -> evaluate -> predict -> report, run once for the module through
the installed entry point, then every output file and JSON document is checked, and predict's
probability for a training-cohort patient must equal the out-of-fold one evaluate recorded.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

from medseq.contracts.cache import read_manifest
from medseq.contracts.run import read_card
from tests.report.test_report import check_png, parse

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SAMPLE = Path(os.environ.get("MEDSEQ_SAMPLE_DATA", REPO / "sample_data"))
"""The bundled sample data (the variable points elsewhere only to debug this test)."""
EPOCHS = "3"
"""Fewer epochs than the README's run to keep CI short; every step is otherwise the same."""


class Metrics(TypedDict):
    n: int
    auc: float | None
    auc_ci: list[float] | None
    balanced_accuracy: float | None
    sensitivity: float | None
    specificity: float | None
    brier: float
    calibration: dict[str, Any]
    confusion: dict[str, int]


class Comparison(TypedDict):
    test: str
    auc_difference: float | None
    p_value: float | None


class Forecast(TypedDict):
    mae_ml: float | None
    n_pairs: int


class Pooled(TypedDict):
    model: Metrics
    baseline: Metrics
    comparison: Comparison
    forecast: Forecast


class Fold(TypedDict):
    fold: int
    n_patients: int
    n_responders: int
    model: Metrics
    baseline: Metrics
    forecast: Forecast


class ScoredPatient(TypedDict):
    patient_id: str
    fold: int
    label: int
    probability: float
    baseline_probability: float
    size_change: float


class Evaluation(TypedDict):
    schema_version: int
    medseq_version: str
    cohort: str
    n_patients: int
    n_responders: int
    settings: dict[str, Any]
    pooled: Pooled
    folds: list[Fold]
    verdict: str
    patients: list[ScoredPatient]
    excluded: list[dict[str, str]]
    model: dict[str, Any]


class PredictionLine(TypedDict):
    schema_version: int
    patient_id: str
    fold: int
    label: int
    probability: float
    observed: int
    days: list[int]
    burden_ml: list[float | None]
    forecast_ml: list[float]


class Prediction(TypedDict):
    probability: float
    threshold: float
    observed_scans: int
    forecast_ml: list[float]
    forecast_next_ml: float | None


class ModelInfo(TypedDict):
    run: str
    used: str
    fold: int | None
    in_training_cohort: bool
    medseq_version: str | None
    config_hash: str | None
    preprocess_config_hash: str | None


class Timepoint(TypedDict):
    index: int
    days: int
    days_since_previous: int
    registration_ok: bool


class PredictDoc(TypedDict):
    schema_version: int
    patient_id: str
    layout: str
    modality: str
    timepoints: list[Timepoint]
    targets: list[str]
    lesions: list[dict[str, Any]]
    recist: list[dict[str, Any]]
    best_overall_response: str
    prediction: Prediction
    model: ModelInfo
    timings_s: dict[str, float]
    warnings: list[str]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if not (SAMPLE / "manifest.csv").is_file():
        pytest.fail("sample_data/manifest.csv is missing: the bundled sample data is required")
    out = tmp_path_factory.mktemp("demo") / "out"
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MEDSEQ": f"{sys.executable} -m medseq",
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "OMP_NUM_THREADS": "2",
           "DEMO_EPOCHS": EPOCHS}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh"), str(SAMPLE), str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, proc.stdout


def test_demo_prints_where_the_report_is(demo: tuple[Path, str]) -> None:
    out, stdout = demo
    assert stdout.strip().splitlines()[-1] == f"Report: {out}/report.html"


def test_every_output_file_is_there(demo: tuple[Path, str]) -> None:
    out, _ = demo
    run = out / "runs" / "demo"
    expected = [
        out / "cache" / "manifest.json", out / "cache" / "salt.key",
        out / "tracking" / "lesions.csv", out / "tracking" / "response.csv",
        out / "tracking" / "tracks.json",
        run / "config.yaml", run / "splits.json", run / "metrics.jsonl",
        run / "predictions.jsonl", run / "model.safetensors", run / "model.json",
        run / "salt.key", run / "log.txt", run / "evaluation.json",
        out / "prediction.json", out / "report.html",
    ]
    for path in expected:
        assert path.is_file(), path
        assert path.stat().st_size > 0, path
    folds = json.loads((run / "splits.json").read_text())["folds_count"]
    for k in range(folds):
        assert (run / "folds" / str(k) / "model.safetensors").is_file()
        assert (run / "folds" / str(k) / "model.json").is_file()
    assert not list(out.rglob(".*.tmp*")), "a temporary file was left behind"


def test_json_documents_follow_their_schemas(demo: tuple[Path, str]) -> None:
    out, _ = demo
    run = out / "runs" / "demo"
    evaluation = TypeAdapter(Evaluation).validate_python(
        json.loads((run / "evaluation.json").read_text()))
    assert evaluation["cohort"] == "cross-validation"
    assert evaluation["verdict"].startswith("the model")
    assert "DeLong p=" in evaluation["verdict"] or "only one class" in evaluation["verdict"]
    lines = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    TypeAdapter(list[PredictionLine]).validate_python(lines)
    assert {p["patient_id"] for p in evaluation["patients"]} <= {x["patient_id"] for x in lines}
    TypeAdapter(PredictDoc).validate_python(json.loads((out / "prediction.json").read_text()))
    read_manifest(out / "cache")  # the cache contract (pydantic)
    for folder in [run, *sorted((run / "folds").iterdir())]:
        read_card(folder)  # model.json of the all-patient and every fold model
    tracks = json.loads((out / "tracking" / "tracks.json").read_text())
    manifest = json.loads((out / "cache" / "manifest.json").read_text())
    # every JSON document medseq writes says its schema version
    documents = [evaluation, tracks, manifest, json.loads((run / "splits.json").read_text()),
                 json.loads((out / "prediction.json").read_text()),
                 *lines, *(json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines())]
    assert all(doc["schema_version"] == 1 for doc in documents)
    # model.json: version 2 (the model's inputs gathered in one record)
    assert json.loads((run / "model.json").read_text())["schema_version"] == 3
    assert {p["patient_id"] for p in tracks["patients"]} == set(manifest["patients"])
    with open(out / "tracking" / "response.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    assert {"patient_id", "days", "sod_mm", "response"} <= set(rows[0])


def test_predict_reproduces_the_out_of_fold_probability(demo: tuple[Path, str]) -> None:
    out, _ = demo
    doc = json.loads((out / "prediction.json").read_text())
    evaluation = json.loads((out / "runs" / "demo" / "evaluation.json").read_text())
    recorded = {p["patient_id"]: p for p in evaluation["patients"]}
    assert doc["patient_id"] in recorded, "the demo predicts a training-cohort patient"
    assert doc["model"]["in_training_cohort"] is True
    assert doc["model"]["fold"] == recorded[doc["patient_id"]]["fold"]
    assert doc["prediction"]["probability"] == pytest.approx(
        recorded[doc["patient_id"]]["probability"], abs=2e-6)


def test_predict_with_the_bundled_tracker_needs_only_the_baseline_mask(
        demo: tuple[Path, str], tmp_path: Path) -> None:
    """A sample patient whose follow-up mask is taken away: ``predict --tracker bundled``
    segments the follow-up itself and scores the patient, leaving the input as it was."""
    out, _ = demo
    study = tmp_path / "SYN0004"
    shutil.copytree(SAMPLE / "nifti" / "SYN0004", study)
    _, *later = sorted(p for p in study.iterdir() if p.is_dir())
    assert later
    for folder in later:
        (folder / "mask.nii.gz").unlink()
    before = sorted((p.relative_to(study), p.stat().st_size) for p in study.rglob("*"))
    proc = subprocess.run([sys.executable, "-m", "medseq", "predict", str(study), "--model",
                           str(out / "runs" / "demo"), "--tracker", "bundled", "--json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    follow_up = [row for row in doc["lesions"] if row["timepoint"] > 0]
    assert follow_up
    assert {row["source"] for row in follow_up} <= {"tracker", "detector"}
    assert any(row["status"] == "tracked" and row["volume_ml"] > 0 for row in follow_up)
    assert all(row["source"] == "mask" for row in doc["lesions"] if row["timepoint"] == 0)
    assert 0.0 <= doc["prediction"]["probability"] <= 1.0
    assert [r["response"] for r in doc["recist"]][1:] != [None] * len(later)
    assert sorted((p.relative_to(study), p.stat().st_size) for p in study.rglob("*")) == before


def test_report_has_every_figure(demo: tuple[Path, str]) -> None:
    out, _ = demo
    html = (out / "report.html").read_text()
    doc = parse(html)
    keys = [k for k, _ in doc.figures]
    for key in ("roc", "calibration", "confusion", "waterfall", "spider", "trajectory",
                "montage"):
        assert key in keys, key
    for _, src in doc.figures:
        check_png(src)
    assert doc.external == []
    assert doc.scripts == 0
    manifest = json.loads((out / "cache" / "manifest.json").read_text())
    assert keys.count("montage") == len(manifest["patients"])
