"""The ``medseq predict`` document: ``--json`` for one patient, one line per patient with ``--all``.

Built by :mod:`medseq.predict`, written by :func:`write_prediction` / :func:`write_prediction_lines`
(``medseq predict``), read back by :func:`read_prediction_lines`. Fields: ``docs/predict.md``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from medseq.contracts.document import Document, Record, check_version, validate
from medseq.errors import CacheError
from medseq.io.atomic import write_text_atomic

SCHEMA_VERSION = 1
REGENERATE = "rerun medseq predict"


class ResponseClass(str, Enum):
    """The predicted class at the threshold."""

    RESPONDER = "responder"
    NON_RESPONDER = "non-responder"
    PROGRESSION = "progression"
    """Progression models (``label_kind: progression``): progression risk at or above it."""
    NO_PROGRESSION = "no-progression"


class TimepointSummary(Record):
    """One scan of the patient (days from baseline, no dates)."""

    index: int
    days: int
    days_since_previous: int
    lesion_volume_ml: float | None = None
    registration_ok: bool = True


class PredictionResult(Record):
    """What the model says."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    probability: float = Field(ge=0.0, le=1.0)
    """Probability of response (CR or PR) after the observed scans; for progression models the
    sigmoid of the risk score."""
    label_kind: str = "overall"
    """What the model predicts (``model.json`` ``label_kind``: ``best_after`` is the best
    response after the observed scans)."""
    risk: float | None = None
    """Progression models: the risk score (higher = earlier progression)."""
    features: dict[str, float] | None = None
    """The measurement summary of the observed scans (the classical feature model's inputs)."""
    response_class: ResponseClass = Field(alias="class")
    threshold: float
    probabilities: list[float] | None = None
    """Per RECIST class (RECIST-class models only)."""
    observed_scans: int
    forecast_ml: list[float] = Field(default_factory=list)
    forecast_next_ml: float | None = None


class ModelProvenance(Record):
    """Which model of which run scored the patient."""

    run: str
    used: str
    fold: int | None = None
    in_training_cohort: bool
    medseq_version: str | None = None
    config_hash: str | None = None
    preprocess_config_hash: str | None = None
    label_names: list[str] | None = None


class PatientPredictionDocument(Document):
    """One patient's prediction."""

    SCHEMA: ClassVar[int] = SCHEMA_VERSION
    REGENERATE: ClassVar[str] = REGENERATE

    patient_id: str
    layout: str
    modality: str
    timepoints: list[TimepointSummary]
    targets: list[str] = Field(default_factory=list)
    """RECIST target track ids."""
    lesions: list[dict[str, Any]] = Field(default_factory=list)
    """Rows of ``lesions.csv`` for this patient (the tracking contract defines them)."""
    recist: list[dict[str, Any]] = Field(default_factory=list)
    """Rows of ``response.csv`` for this patient (the tracking contract defines them)."""
    best_overall_response: str | None = None
    prediction: PredictionResult
    model: ModelProvenance
    medseq_version: str
    timings_s: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)


class PredictionFailure(Document):
    """An ``--all`` line for a patient that could not be predicted."""

    SCHEMA: ClassVar[int] = SCHEMA_VERSION
    REGENERATE: ClassVar[str] = REGENERATE

    patient_id: str
    error: str


PredictLine = PatientPredictionDocument | PredictionFailure


def prediction_json(doc: PredictLine, *, indent: int | None = None) -> str:
    """The document's JSON text (``schema_version`` first; ``class`` by its name)."""
    doc.schema_version = type(doc).SCHEMA
    return json.dumps(doc.model_dump(mode="json", by_alias=True), indent=indent)


def write_prediction_lines(path: Path, docs: Iterable[PredictLine]) -> Path:
    """Write ``--all`` lines atomically."""
    write_text_atomic(Path(path), "".join(prediction_json(d) + "\n" for d in docs))
    return Path(path)


def write_prediction(path: Path, doc: PatientPredictionDocument) -> Path:
    """Write one patient's document atomically (what ``--json`` prints)."""
    write_text_atomic(Path(path), prediction_json(doc, indent=2) + "\n")
    return Path(path)


def read_prediction_lines(path: Path) -> list[PredictLine]:
    """Every line of an ``--all`` output (or a ``--json`` document: one line of its own)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise CacheError(f"cannot read ({err.strerror})", path=path) from None
    try:
        items = [json.loads(text)] if text.lstrip().startswith("{\n") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as err:
        raise CacheError(f"not JSON ({err})", path=path) from None
    out: list[PredictLine] = []
    for number, data in enumerate(items, start=1):
        model: type[PatientPredictionDocument] | type[PredictionFailure] = (
            PredictionFailure if isinstance(data, dict) and "error" in data
            else PatientPredictionDocument)
        check_version(model, data, path=path)
        out.append(validate(model, data, path=path, where=f"line {number} at "))
    return out
