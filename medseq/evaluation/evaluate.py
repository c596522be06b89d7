"""Evaluate a training run: the model beside the size-only baseline, per fold and pooled.

Everything is patient-level and out-of-fold: the model's probabilities are those
``predictions.jsonl`` recorded for each patient by the fold model that never saw it, and the
baseline is refitted on the same folds. The verdict sentence says plainly whether the model beats
the baseline; a model that does not must say so.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseq import __version__
from medseq.contracts.document import validate
from medseq.contracts.evaluation import (
    CalibrationBinRecord,
    CalibrationRecord,
    ClassifierMetrics,
    Cohort,
    Comparison,
    ConfusionRecord,
    EvaluationDocument,
    Exclusion,
    FoldMetrics,
    ForecastMetrics,
    ModelProvenance,
    Pooled,
    ScoredRow,
    SettingsRecord,
)
from medseq.errors import CacheError, InputDataError
from medseq.evaluation import metrics
from medseq.evaluation.baseline import (
    BaselineModel,
    fit_baseline,
    out_of_fold_baseline,
    relative_volume_change,
)
from medseq.evaluation.rundir import (
    MODEL_JSON_NAME,
    PREDICTIONS_NAME,
    SPLITS_NAME,
    PatientPrediction,
    read_card,
    read_predictions,
    read_splits,
    read_splits_document,
    require_run,
)

THRESHOLD = 0.5
"""Probability at or above which a patient is called a responder."""
ALPHA = 0.05
"""Significance level of the verdict's DeLong test."""
MIN_PER_CLASS = 10
"""Fewer patients than this in either class make the verdict say it is not reliable."""


@dataclass(frozen=True)
class EvaluationSettings:
    """How uncertainty is estimated."""

    n_bootstrap: int = metrics.DEFAULT_BOOTSTRAP
    seed: int = metrics.DEFAULT_SEED
    level: float = 0.95
    threshold: float = THRESHOLD
    n_bins: int = 10


@dataclass(frozen=True)
class ScoredPatient:
    """One evaluated patient: label, model and baseline probabilities, forecast pairs."""

    patient_id: str
    fold: int | None
    label: int
    probability: float
    baseline_probability: float
    size_change: float
    forecast_pairs: tuple[tuple[float, float], ...] = ()


def evaluate_run(run_dir: Path, settings: EvaluationSettings | None = None
                 ) -> EvaluationDocument:
    """Cross-validated evaluation of ``run_dir``; the document ``evaluation.json`` holds."""
    settings = settings or EvaluationSettings()
    run_dir = require_run(run_dir)
    inputs = run_inputs_hash(run_dir)
    predictions = read_predictions(run_dir)
    splits = read_splits(run_dir)
    scored, excluded = score_cross_validation(predictions, splits)
    if not scored:
        raise InputDataError(f"none of the run's {len(predictions)} patients can be evaluated "
                             f"({_reasons(excluded)}); evaluation needs patients with a label "
                             "(labels.csv, the manifest's label column, or a RECIST response "
                             "from tracking) and two scans", path=run_dir)
    doc = evaluation_document(scored, settings, cohort=Cohort.CROSS_VALIDATION)
    doc.inputs_sha256 = inputs
    doc.excluded = excluded
    doc.model = model_provenance(run_dir)
    return doc


def run_inputs_hash(run_dir: Path) -> str:
    """``sha256:`` of the run files a cross-validation evaluation is computed from.

    ``predictions.jsonl`` and ``splits.json`` (their bytes): a retrained or edited run changes
    it, so a stored ``evaluation.json`` whose ``inputs_sha256`` differs is stale.
    """
    digest = hashlib.sha256()
    for name in (PREDICTIONS_NAME, SPLITS_NAME):
        path = Path(run_dir) / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as err:
            raise CacheError(f"cannot read ({err.strerror})", path=path) from None
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return "sha256:" + digest.hexdigest()


def score_cross_validation(
    predictions: Sequence[PatientPrediction], splits: Mapping[str, int]
) -> tuple[list[ScoredPatient], list[Exclusion]]:
    """Pair every labelled patient's out-of-fold probability with the baseline's.

    Patients without a label or without two scans (no size change) are left out of both, and
    listed with the reason, so model and baseline always see the same patients.
    """
    excluded: list[Exclusion] = []
    usable: list[PatientPrediction] = []
    features: dict[str, float] = {}
    for p in predictions:
        change = relative_volume_change(p.burden_ml)
        if p.label is None:
            excluded.append(Exclusion(patient_id=p.patient_id, reason="no label"))
        elif change is None:
            excluded.append(Exclusion(patient_id=p.patient_id, reason="fewer than two scans"))
        else:
            usable.append(p)
            features[p.patient_id] = change
    folds = {p.patient_id: _fold_of(p, splits) for p in usable}
    labels = {p.patient_id: int(p.label) for p in usable if p.label is not None}
    base_probs, _ = out_of_fold_baseline(features, labels, folds)
    scored = [
        ScoredPatient(
            patient_id=p.patient_id,
            fold=folds[p.patient_id],
            label=labels[p.patient_id],
            probability=p.probability,
            baseline_probability=base_probs[p.patient_id],
            size_change=features[p.patient_id],
            forecast_pairs=tuple(p.forecast_pairs()),
        )
        for p in usable
    ]
    return scored, excluded


def fit_full_baseline(predictions: Sequence[PatientPrediction], *, run_dir: Path | None = None
                      ) -> BaselineModel:
    """The baseline fitted on every labelled training patient (for external cohorts).

    Raises:
        InputDataError: no training patient has a label and two scans.
    """
    pairs = [
        (change, int(p.label))
        for p in predictions
        if p.label is not None and (change := relative_volume_change(p.burden_ml)) is not None
    ]
    if not pairs:
        raise InputDataError("no patient of the run has a label and two scans, so the size-only "
                             "baseline cannot be fitted", path=run_dir)
    return fit_baseline([c for c, _ in pairs], [y for _, y in pairs])


def evaluation_document(
    scored: Sequence[ScoredPatient], settings: EvaluationSettings, *, cohort: Cohort
) -> EvaluationDocument:
    """Metrics per fold and pooled, DeLong comparison, verdict and per-patient rows."""
    if not scored:
        raise ValueError("no patient can be evaluated (none has a label and two scans)")
    labels = [s.label for s in scored]
    model_p = [s.probability for s in scored]
    base_p = [s.baseline_probability for s in scored]
    comparison = compare(labels, model_p, base_p)
    folds = []
    for fold in sorted({s.fold for s in scored if s.fold is not None}):
        part = [s for s in scored if s.fold == fold]
        y = [s.label for s in part]
        folds.append(FoldMetrics(
            fold=fold,
            n_patients=len(part),
            n_responders=int(sum(y)),
            model=classifier_metrics(y, [s.probability for s in part], settings),
            baseline=classifier_metrics(y, [s.baseline_probability for s in part], settings),
            forecast=forecast_metrics(part),
        ))
    return EvaluationDocument(
        medseq_version=__version__,
        created=dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        cohort=cohort,
        n_patients=len(scored),
        n_responders=int(sum(labels)),
        settings=SettingsRecord(
            threshold=settings.threshold,
            bootstrap_resamples=settings.n_bootstrap,
            bootstrap_seed=settings.seed,
            confidence_level=settings.level,
            calibration_bins=settings.n_bins,
            baseline="logistic regression on (v1 - v0) / v0, total lesion volume of the first "
                     "two scans, fitted on the same folds",
        ),
        pooled=Pooled(
            model=classifier_metrics(labels, model_p, settings),
            baseline=classifier_metrics(labels, base_p, settings),
            comparison=comparison,
            forecast=forecast_metrics(scored),
        ),
        folds=folds,
        verdict=verdict(comparison, n_patients=len(scored), n_responders=int(sum(labels))),
        patients=[
            ScoredRow(
                patient_id=s.patient_id,
                fold=s.fold,
                label=s.label,
                probability=s.probability,
                baseline_probability=s.baseline_probability,
                size_change=s.size_change,
            )
            for s in scored
        ],
    )


def classifier_metrics(
    labels: Sequence[int], probabilities: Sequence[float], settings: EvaluationSettings
) -> ClassifierMetrics:
    """Every per-classifier metric; AUC-type entries are None when a class is missing."""
    cm = metrics.confusion_matrix(labels, probabilities, threshold=settings.threshold)
    both = metrics.has_both_classes(labels)
    auc = metrics.roc_auc(labels, probabilities) if both else None
    ci = (
        metrics.bootstrap_auc_ci(labels, probabilities, n_resamples=settings.n_bootstrap,
                                 level=settings.level, seed=settings.seed)
        if both else None
    )
    cal = metrics.calibration(labels, probabilities, n_bins=settings.n_bins)
    return ClassifierMetrics(
        n=len(labels),
        auc=auc,
        auc_ci=ci,
        balanced_accuracy=cm.balanced_accuracy,
        sensitivity=cm.sensitivity,
        specificity=cm.specificity,
        brier=metrics.brier_score(labels, probabilities),
        calibration=CalibrationRecord(
            slope=cal.slope,
            intercept=cal.intercept,
            curve=[
                CalibrationBinRecord(lower=b.lower, upper=b.upper,
                                     mean_predicted=b.mean_predicted,
                                     observed_fraction=b.observed_fraction, count=b.count)
                for b in cal.bins
            ],
        ),
        confusion=ConfusionRecord(tp=cm.tp, fp=cm.fp, tn=cm.tn, fn=cm.fn),
    )


def compare(
    labels: Sequence[int], model_p: Sequence[float], base_p: Sequence[float]
) -> Comparison:
    """DeLong test of model AUC minus baseline AUC on the same patients."""
    if not metrics.has_both_classes(labels):
        return Comparison()
    res = metrics.delong_test(labels, model_p, base_p)
    return Comparison(auc_difference=res.difference, std_error=res.std_error, z=res.z,
                      p_value=res.p_value)


def forecast_metrics(scored: Sequence[ScoredPatient]) -> ForecastMetrics:
    """MAE (mL) of the next-scan burden forecast over every (scan t -> t+1) pair."""
    pairs = [pair for s in scored for pair in s.forecast_pairs]
    mae = metrics.mean_absolute_error([o for o, _ in pairs], [f for _, f in pairs])
    return ForecastMetrics(mae_ml=mae, n_pairs=len(pairs))


def verdict(
    comparison: Comparison | Mapping[str, Any],
    *,
    alpha: float = ALPHA,
    n_patients: int | None = None,
    n_responders: int | None = None,
) -> str:
    """One honest sentence comparing the model with the size-only baseline.

    With fewer than :data:`MIN_PER_CLASS` patients in either class the DeLong test's normal
    approximation is not to be trusted, and the sentence says so.
    """
    if not isinstance(comparison, Comparison):
        comparison = Comparison.model_validate(comparison)
    diff = comparison.auc_difference
    p = comparison.p_value
    if diff is None:
        return "cannot compare with the size-only baseline: the cohort holds only one class"
    p_text = "not computable" if p is None else _p(p)
    if p is not None and p < alpha and diff > 0:
        sentence = (f"the model beats the size-only baseline (AUC difference {diff:+.3f}, "
                    f"DeLong p={p_text})")
    elif p is not None and p < alpha and diff < 0:
        sentence = (f"the model is worse than the size-only baseline (AUC difference "
                    f"{diff:+.3f}, DeLong p={p_text})")
    else:
        sentence = (f"the model does not beat the size-only baseline (AUC difference "
                    f"{diff:+.3f}, DeLong p={p_text})")
    if n_patients is not None and n_responders is not None:
        smaller = min(n_responders, n_patients - n_responders)
        if smaller < MIN_PER_CLASS:
            sentence += (f"; but with {n_patients} patients ({n_responders} responders) this "
                         "comparison is not reliable: the test needs at least "
                         f"{MIN_PER_CLASS} patients in each class")
    return sentence


def model_provenance(run_dir: Path) -> ModelProvenance:
    """Version, config hash and architecture name of the run's all-patient model."""
    card = read_card(run_dir)
    out: dict[str, Any] = {}
    if card is not None:
        given = card.model_fields_set  # what model.json holds: absent keys stay absent
        values = {
            "medseq_version": card.medseq_version, "config_hash": card.config_hash,
            "preprocess_config_hash": card.preprocess_config_hash,
            "architecture": card.architecture.model_dump(mode="json", exclude_unset=True),
            "label_names": card.label_names, "epochs": card.epochs,
        }
        out = {k: v for k, v in values.items() if k in given}
        out["observe"] = card.inputs.observe
    if out.get("config_hash") is None and (Path(run_dir) / SPLITS_NAME).is_file():
        out["config_hash"] = read_splits_document(run_dir).config_hash
    return validate(ModelProvenance, out, path=Path(run_dir) / MODEL_JSON_NAME)


def _reasons(excluded: Sequence[Exclusion]) -> str:
    """``6 no label, 1 fewer than two scans``: why patients were left out, counted."""
    counts: dict[str, int] = {}
    for row in excluded:
        counts[row.reason] = counts.get(row.reason, 0) + 1
    return ", ".join(f"{n} {reason}" for reason, n in counts.items()) or "no patient"


def _fold_of(p: PatientPrediction, splits: Mapping[str, int]) -> int:
    if p.patient_id in splits:
        return int(splits[p.patient_id])
    if p.fold is not None:
        return p.fold
    raise CacheError(f"patient {p.patient_id} is in no fold of {SPLITS_NAME}")


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"
