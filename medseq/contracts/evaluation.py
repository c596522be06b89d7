"""``evaluation.json``: a run's patient-level metrics beside the size-only baseline.

One writer (``medseq evaluate``, through :func:`write_evaluation`) and one reader
(:func:`read_evaluation`: ``report`` and the commands). ``inputs_sha256`` records what the
cross-validation document was computed from, so a reader can tell a stale copy from a current one
without recomputing it.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, JsonValue, SerializerFunctionWrapHandler, model_serializer

from medseq.contracts.document import Document, Record, read_document, write_document

EVALUATION_NAME = "evaluation.json"
EXTERNAL_PREFIX = "evaluation-external-"


class Cohort(str, Enum):
    """Which patients a document evaluates."""

    CROSS_VALIDATION = "cross-validation"
    EXTERNAL = "external"


class SettingsRecord(Record):
    """How uncertainty and calls were computed."""

    threshold: float
    bootstrap_resamples: int
    bootstrap_seed: int
    confidence_level: float
    calibration_bins: int
    baseline: str
    """What the size-only baseline is, in words."""


class CalibrationBinRecord(Record):
    """One bin of the reliability curve."""

    lower: float
    upper: float
    mean_predicted: float
    observed_fraction: float
    count: int


class CalibrationRecord(Record):
    """Logistic recalibration (None where the fit does not exist) and the binned curve."""

    slope: float | None
    intercept: float | None
    curve: list[CalibrationBinRecord]


class ConfusionRecord(Record):
    """Counts at the decision threshold (positive = responder)."""

    tp: int
    fp: int
    tn: int
    fn: int


class ClassifierMetrics(Record):
    """Every metric of one classifier on one set of patients."""

    n: int
    auc: float | None
    """None when a class is missing."""
    auc_ci: tuple[float, float] | None
    balanced_accuracy: float | None
    sensitivity: float | None
    specificity: float | None
    brier: float
    calibration: CalibrationRecord
    confusion: ConfusionRecord

    def auc_text(self) -> str:
        """``0.812 (0.701-0.905)``: the AUC with its 95% CI, or ``n/a``."""
        if self.auc is None or self.auc_ci is None:
            return "n/a"
        lo, hi = self.auc_ci
        return f"{self.auc:.3f} ({lo:.3f}-{hi:.3f})"


class Comparison(Record):
    """DeLong test of model AUC minus baseline AUC (all None with one class only)."""

    test: str = "DeLong"
    auc_difference: float | None = None
    std_error: float | None = None
    z: float | None = None
    p_value: float | None = None


class ForecastMetrics(Record):
    """Mean absolute error of the next-scan burden forecast."""

    mae_ml: float | None
    n_pairs: int


class Pooled(Record):
    """Model and baseline on every evaluated patient, their comparison and the forecast."""

    model: ClassifierMetrics
    baseline: ClassifierMetrics
    comparison: Comparison
    forecast: ForecastMetrics


class FoldMetrics(Record):
    """Model and baseline on the patients one cross-validation fold held out."""

    fold: int
    n_patients: int
    n_responders: int
    model: ClassifierMetrics
    baseline: ClassifierMetrics
    forecast: ForecastMetrics


class ScoredRow(Record):
    """One evaluated patient."""

    patient_id: str
    fold: int | None
    label: int
    probability: float
    baseline_probability: float
    size_change: float


class Exclusion(Record):
    """A patient left out of both model and baseline, and why."""

    patient_id: str
    reason: str


class ModelProvenance(Record):
    """What ``model.json`` says of the run's all-patient model (keys it lacks stay None)."""

    medseq_version: str | None = None
    config_hash: str | None = None
    preprocess_config_hash: str | None = None
    architecture: dict[str, JsonValue] | str | None = None
    """The model's architecture settings as ``model.json`` holds them; owned and typed by
    ``medseq.contracts.run``, copied here only for provenance."""
    label_names: list[str] | None = None
    observe: int | None = None
    epochs: int | None = None

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None}


class BaselineFit(Record):
    """The size-only baseline fitted on the whole training cohort (external evaluation)."""

    intercept: float
    coef: float
    n_train: int


class EvaluationDocument(Document):
    """``evaluation.json`` and ``evaluation-external-NAME.json``."""

    SCHEMA: ClassVar[int] = 1
    REGENERATE: ClassVar[str] = "run medseq evaluate RUN to write it again"
    OPTIONAL: ClassVar[tuple[str, ...]] = ("data", "inputs_sha256", "baseline_model")
    """Keys left out of the file when None (they belong to one cohort kind only)."""

    medseq_version: str
    created: str
    """UTC time of writing, ISO 8601."""
    cohort: Cohort
    data: str | None = None
    """External cohorts: the cache folder's name."""
    inputs_sha256: str | None = None
    """Cross-validation: hash of the run files it was computed from (see
    ``medseq.evaluation.evaluate.run_inputs_hash``); None in documents written before it."""
    n_patients: int
    n_responders: int
    settings: SettingsRecord
    pooled: Pooled
    folds: list[FoldMetrics]
    verdict: str
    patients: list[ScoredRow]
    excluded: list[Exclusion] = Field(default_factory=list)
    model: ModelProvenance = Field(default_factory=ModelProvenance)
    baseline_model: BaselineFit | None = None

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if not (k in self.OPTIONAL and v is None)}

    def scored(self, patient_id: str) -> ScoredRow | None:
        """The evaluated row of ``patient_id``, if the patient was evaluated."""
        return next((row for row in self.patients if row.patient_id == patient_id), None)


def read_evaluation(path: Path) -> EvaluationDocument:
    """Read an evaluation document; a one-line CacheError naming it when it cannot be used."""
    return read_document(Path(path), EvaluationDocument)


def write_evaluation(path: Path, doc: EvaluationDocument) -> Path:
    """Write ``doc`` atomically at the current schema version."""
    return write_document(Path(path), doc)
