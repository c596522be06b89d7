"""Evaluate a training run: the model beside every baseline, per fold and pooled.

Everything is patient-level and out-of-fold: the model's probabilities are those
``predictions.jsonl`` recorded for each patient by the fold model that never saw it, and the
baselines are refitted on the same folds and scored on the same patients and scans: size-only
(:mod:`~medseq.evaluation.baseline`), the classical feature model when the predictions carry
measurement features (:mod:`~medseq.evaluation.feature_baseline`), and persistence for the
forecast (:mod:`~medseq.evaluation.forecast`). ``progression`` labels add the C-index and the
time-dependent AUC (:mod:`~medseq.evaluation.survival`). The verdict sentence says plainly
whether the model beats size-only and how it compares with the feature model.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
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
    NamedComparison,
    Pooled,
    ScoredRow,
    SettingsRecord,
    SurvivalMetrics,
    SurvivalScore,
    TaskRecord,
)
from medseq.errors import CacheError, InputDataError
from medseq.evaluation import metrics, survival
from medseq.evaluation.baseline import (
    BaselineModel,
    fit_baseline,
    out_of_fold_baseline,
    relative_volume_change,
)
from medseq.evaluation.feature_baseline import (
    C as FEATURE_C,
)
from medseq.evaluation.feature_baseline import (
    FeatureModel,
    common_feature_names,
    fit_feature_model,
    out_of_fold_feature_model,
)
from medseq.evaluation.forecast import TEST as FORECAST_TEST
from medseq.evaluation.forecast import forecast_vs_persistence
from medseq.evaluation.rundir import (
    MODEL_JSON_NAME,
    PREDICTIONS_NAME,
    SPLITS_NAME,
    ForecastPair,
    PatientPrediction,
    read_card,
    read_predictions,
    read_splits_document,
    require_run,
)
from medseq.evaluation.verdict import (
    FEATURE_MODEL,
    MODEL,
    SIZE_ONLY,
    verdict,
)

THRESHOLD = 0.5
"""Probability at or above which a patient is called a responder."""
PROGRESSION = "progression"
"""The label kind whose label is an event with a time (C-index, time-dependent AUC)."""


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
    forecast_pairs: tuple[ForecastPair, ...] = ()
    feature_probability: float | None = None
    """Out-of-fold probability of the feature baseline (None without features)."""
    feature_score: float | None = None
    """Its linear score (log-odds): the feature baseline's risk for progression labels."""
    risk: float | None = None
    """``progression`` labels: the model's risk score."""
    time_days: float | None = None
    event: bool | None = None


def evaluate_run(run_dir: Path, settings: EvaluationSettings | None = None
                 ) -> EvaluationDocument:
    """Cross-validated evaluation of ``run_dir``; the document ``evaluation.json`` holds."""
    settings = settings or EvaluationSettings()
    run_dir = require_run(run_dir)
    inputs = run_inputs_hash(run_dir)
    predictions = read_predictions(run_dir)
    splits = read_splits_document(run_dir)
    scored, excluded = score_cross_validation(predictions, splits.folds,
                                              determined=splits.determined, times=splits.times)
    if not scored:
        raise InputDataError(f"none of the run's {len(predictions)} patients can be evaluated "
                             f"({_reasons(excluded)}); evaluation needs patients with a label "
                             "(labels.csv, the manifest's label column, or a RECIST response "
                             "from tracking) and two scans", path=run_dir)
    provenance = model_provenance(run_dir)
    task = TaskRecord(label_kind=splits.label_kind,
                      observe=splits.observe if splits.observe is not None else provenance.observe,
                      n_determined=len(splits.determined))
    doc = evaluation_document(scored, settings, cohort=Cohort.CROSS_VALIDATION, task=task)
    doc.inputs_sha256 = inputs
    doc.excluded = excluded
    doc.model = provenance
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
    predictions: Sequence[PatientPrediction], splits: Mapping[str, int], *,
    determined: Mapping[str, str] | None = None, times: Mapping[str, float] | None = None,
) -> tuple[list[ScoredPatient], list[Exclusion]]:
    """Pair every labelled patient's out-of-fold probability with the baselines'.

    Patients without a label, without two scans (no size change) or whose label the observed
    scans already decide (``determined``, from ``splits.json``) are left out of all, and listed
    with the reason, so model and baselines always see the same patients. The feature baseline is
    fitted when every such patient carries measurement features (on the names all carry).
    ``times`` (``splits.json``) gives the follow-up of ``progression`` labels where a line has
    none.
    """
    determined = determined or {}
    times = times or {}
    excluded: list[Exclusion] = []
    usable: list[PatientPrediction] = []
    features: dict[str, float] = {}
    for p in predictions:
        change = relative_volume_change(p.burden_ml)
        if p.label is None:
            excluded.append(Exclusion(patient_id=p.patient_id, reason="no label"))
        elif p.patient_id in determined:
            excluded.append(Exclusion(patient_id=p.patient_id,
                                      reason="label already decided by the observed scans"))
        elif change is None:
            excluded.append(Exclusion(patient_id=p.patient_id, reason="fewer than two scans"))
        else:
            usable.append(p)
            features[p.patient_id] = change
    folds = {p.patient_id: _fold_of(p, splits) for p in usable}
    labels = {p.patient_id: int(p.label) for p in usable if p.label is not None}
    base_probs, _ = out_of_fold_baseline(features, labels, folds)
    names = common_feature_names([p.features for p in usable])
    feature_probs: dict[str, float] = {}
    feature_scores: dict[str, float] = {}
    if names:
        feature_probs, feature_scores, _ = out_of_fold_feature_model(
            {p.patient_id: p.features or {} for p in usable}, labels, folds, names)
    scored = [
        ScoredPatient(
            patient_id=p.patient_id,
            fold=folds[p.patient_id],
            label=labels[p.patient_id],
            probability=p.probability,
            baseline_probability=base_probs[p.patient_id],
            size_change=features[p.patient_id],
            forecast_pairs=tuple(p.forecast_pairs()),
            feature_probability=feature_probs.get(p.patient_id),
            feature_score=feature_scores.get(p.patient_id),
            risk=p.risk,
            time_days=p.time_days if p.time_days is not None else times.get(p.patient_id),
            event=p.event if p.event is not None else bool(labels[p.patient_id]),
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


def fit_full_feature_baseline(predictions: Sequence[PatientPrediction], *,
                              run_dir: Path | None = None) -> FeatureModel:
    """The feature baseline fitted on every labelled training patient with two scans (the
    patients :func:`fit_full_baseline` uses), on the feature names they all carry.

    Raises:
        InputDataError: no such patient, or they carry no common feature.
    """
    usable = [p for p in predictions
              if p.label is not None and relative_volume_change(p.burden_ml) is not None]
    names = common_feature_names([p.features for p in usable])
    if not names:
        raise InputDataError("no labelled patient of the run with two scans, or they carry no "
                             "common measurement feature, so the feature baseline cannot be "
                             "fitted", path=run_dir)
    return fit_feature_model([p.features or {} for p in usable],
                             [int(p.label) for p in usable if p.label is not None], names)


def evaluation_document(
    scored: Sequence[ScoredPatient], settings: EvaluationSettings, *, cohort: Cohort,
    task: TaskRecord | None = None,
) -> EvaluationDocument:
    """Metrics per fold and pooled, DeLong comparisons, verdict and per-patient rows."""
    if not scored:
        raise ValueError("no patient can be evaluated (none has a label and two scans)")
    labels = [s.label for s in scored]
    model_p = [s.probability for s in scored]
    base_p = [s.baseline_probability for s in scored]
    with_features = all(s.feature_probability is not None for s in scored)
    feature_p = [float(s.feature_probability or 0.0) for s in scored]
    comparison = compare(labels, model_p, base_p)
    comparisons = [_named(comparison, MODEL, SIZE_ONLY)]
    if with_features:
        comparisons += [_named(compare(labels, model_p, feature_p), MODEL, FEATURE_MODEL),
                        _named(compare(labels, feature_p, base_p), FEATURE_MODEL, SIZE_ONLY)]
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
            forecast=forecast_metrics(part, settings),
            feature_model=classifier_metrics(
                y, [float(s.feature_probability or 0.0) for s in part], settings)
            if with_features else None,
        ))
    survival_block = (survival_metrics(scored, settings)
                      if task is not None and task.label_kind == PROGRESSION else None)
    return EvaluationDocument(
        medseq_version=__version__,
        created=dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        cohort=cohort,
        task=task,
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
            feature_baseline=(f"logistic regression (L2, C={FEATURE_C:g}, fixed in advance) on "
                              "the standardised measurement features of the observed scans "
                              "(missing values: training median), fitted on the same folds"
                              if with_features else None),
            forecast_test=f"persistence (last burden carried forward) on the same pairs; "
                          f"{FORECAST_TEST}, two-sided",
        ),
        pooled=Pooled(
            model=classifier_metrics(labels, model_p, settings),
            baseline=classifier_metrics(labels, base_p, settings),
            comparison=comparison,
            forecast=forecast_metrics(scored, settings),
            feature_model=classifier_metrics(labels, feature_p, settings)
            if with_features else None,
            comparisons=comparisons,
            survival=survival_block,
        ),
        folds=folds,
        verdict=verdict(comparison, n_patients=len(scored), n_responders=int(sum(labels)),
                        feature_comparison=comparisons[1] if with_features else None,
                        progression=survival_block),
        # The record keeps the fields it declares; the pairs and risks stay in the metrics.
        patients=[ScoredRow.model_validate({name: getattr(s, name)
                                            for name in ScoredRow.model_fields})
                  for s in scored],
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


def forecast_metrics(scored: Sequence[ScoredPatient],
                     settings: EvaluationSettings | None = None) -> ForecastMetrics:
    """MAE (mL) of the next-scan burden forecast over every (scan t -> t+1) pair, beside
    persistence on the same pairs (:func:`medseq.evaluation.forecast.forecast_vs_persistence`)."""
    settings = settings or EvaluationSettings()
    return forecast_vs_persistence([s.forecast_pairs for s in scored],
                                   n_resamples=settings.n_bootstrap, level=settings.level,
                                   seed=settings.seed)


def survival_metrics(scored: Sequence[ScoredPatient],
                     settings: EvaluationSettings) -> SurvivalMetrics | None:
    """C-index and time-dependent AUC (at the median progression time) of the model's risk,
    the size-only risk (relative burden change, no fit) and the feature model's linear score,
    on the patients with a follow-up time; None when none has one."""
    rows = [s for s in scored if s.time_days is not None and s.event is not None]
    if not rows:
        return None
    time = [float(s.time_days or 0.0) for s in rows]
    event = [bool(s.event) for s in rows]
    at = survival.median_event_time(time, event)
    model_risk = ([float(s.risk) for s in rows if s.risk is not None]
                  if all(s.risk is not None for s in rows)
                  else [_logit(s.probability) for s in rows])
    with_features = all(s.feature_score is not None for s in rows)
    return SurvivalMetrics(
        n=len(rows), n_events=int(sum(event)), at_days=at,
        model=survival_score(time, event, model_risk, at, settings),
        baseline=survival_score(time, event, [s.size_change for s in rows], at, settings),
        feature_model=survival_score(time, event, [float(s.feature_score or 0.0) for s in rows],
                                     at, settings) if with_features else None,
    )


def survival_score(time: Sequence[float], event: Sequence[bool], risk: Sequence[float],
                   at_days: float | None, settings: EvaluationSettings) -> SurvivalScore:
    """C-index and time-dependent AUC of one risk with patient-bootstrap CIs (None where
    undefined)."""
    def td_auc(t: Any, e: Any, r: Any) -> float:
        if at_days is None:
            raise ValueError("no progression")
        return survival.cumulative_dynamic_auc(t, e, r, at_days)

    values: dict[str, Any] = {}
    for key, statistic in (("c_index", survival.concordance_index), ("td_auc", td_auc)):
        try:
            values[key] = statistic(time, event, risk)
        except ValueError:
            values[key] = None
            continue
        values[f"{key}_ci"] = survival.bootstrap_ci(
            statistic, time, event, risk, n_resamples=settings.n_bootstrap,
            level=settings.level, seed=settings.seed)
    return SurvivalScore.model_validate(values)


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


def _named(comparison: Comparison, first: str, second: str) -> NamedComparison:
    return NamedComparison(first=first, second=second, **comparison.model_dump())


def _logit(p: float) -> float:
    q = min(max(p, 1e-6), 1.0 - 1e-6)
    return math.log(q / (1.0 - q))


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
