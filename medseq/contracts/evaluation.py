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
    feature_baseline: str | None = None
    """What the classical feature baseline is, in words (None when the run has no features)."""
    forecast_test: str | None = None
    """How the forecast is compared with persistence, in words."""


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


class NamedComparison(Comparison):
    """DeLong test of the AUC of ``first`` minus that of ``second`` on the same patients.

    Names: ``model``, ``size-only``, ``feature model``.
    """

    first: str
    second: str


class PersistenceRecord(Record):
    """Persistence, the forecast baseline: the last observed burden carried forward.

    ``p_value`` is the two-sided Wilcoxon signed-rank test of the per-patient differences of
    mean absolute error (model minus persistence); ``beats`` is True when the model's MAE is
    lower with p below 0.05, None when the test cannot be computed.
    """

    mae_ml: float | None
    mae_ci: tuple[float, float] | None = None
    test: str = "Wilcoxon signed-rank, per-patient mean absolute error"
    p_value: float | None = None
    beats: bool | None = None


class ForecastMetrics(Record):
    """Mean absolute error of the next-scan burden forecast, beside persistence."""

    mae_ml: float | None
    n_pairs: int
    mae_ci: tuple[float, float] | None = None
    """Patient-level bootstrap CI."""
    n_patients: int | None = None
    """Patients holding at least one forecast pair."""
    persistence: PersistenceRecord | None = None
    """None in documents written before persistence was reported."""


class SurvivalScore(Record):
    """Discrimination of one risk score for time to progression."""

    c_index: float | None
    c_index_ci: tuple[float, float] | None = None
    td_auc: float | None = None
    """Uno's cumulative/dynamic AUC at :attr:`SurvivalMetrics.at_days`."""
    td_auc_ci: tuple[float, float] | None = None


class SurvivalMetrics(Record):
    """``progression`` labels: C-index and time-dependent AUC of every risk score."""

    n: int
    n_events: int
    at_days: float | None
    """Where the time-dependent AUC is taken: the median time of the observed progressions."""
    model: SurvivalScore
    """Risk: the model's ``risk`` (its logit of the probability where absent)."""
    baseline: SurvivalScore
    """Risk: the relative burden change between the first two scans (no fit)."""
    feature_model: SurvivalScore | None = None
    """Risk: the linear score of the out-of-fold feature logistic regression on the event."""


class Pooled(Record):
    """Model and baselines on every evaluated patient, their comparisons and the forecast."""

    model: ClassifierMetrics
    baseline: ClassifierMetrics
    comparison: Comparison
    """Model against the size-only baseline."""
    forecast: ForecastMetrics
    feature_model: ClassifierMetrics | None = None
    """The classical feature baseline (None when the run's predictions carry no features)."""
    comparisons: list[NamedComparison] = Field(default_factory=list)
    """Every pairwise DeLong test: model vs size-only, and with features model vs feature
    model and feature model vs size-only."""
    survival: SurvivalMetrics | None = None
    """``progression`` labels only."""


class FoldMetrics(Record):
    """Model and baseline on the patients one cross-validation fold held out."""

    fold: int
    n_patients: int
    n_responders: int
    model: ClassifierMetrics
    baseline: ClassifierMetrics
    forecast: ForecastMetrics
    feature_model: ClassifierMetrics | None = None


class ScoredRow(Record):
    """One evaluated patient."""

    patient_id: str
    fold: int | None
    label: int
    probability: float
    baseline_probability: float
    size_change: float
    feature_probability: float | None = None
    """Out-of-fold probability of the feature baseline (None without features)."""


class TaskRecord(Record):
    """What the label means and who was left out because it was already decided."""

    label_kind: str
    """``splits.json``'s ``label_kind`` (``best_after``, ``landmark``, ``progression``,
    ``overall``, ``given``)."""
    observe: int | None = None
    """Scans the models see (None: all)."""
    n_determined: int = 0
    """Patients left out because the observed scans already decide their label."""


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
    OPTIONAL: ClassVar[tuple[str, ...]] = ("data", "inputs_sha256", "baseline_model", "task")
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
    task: TaskRecord | None = None
    """Label kind, scans observed, patients already decided (None in older documents)."""
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
