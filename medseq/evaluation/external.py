"""Evaluate a run's all-patient model on an external cohort (``medseq evaluate RUN --data``).

The external cache must come from ``medseq preprocess`` with the model's settings (the
configuration hash is compared; another one is refused, naming the settings that differ). Labels are
the cache's manifest labels when it has any, else the best overall RECIST response from that
cache's stored tracking (the rule of :mod:`medseq.tracking.outcome`, as ``train`` uses). The
size-only baseline is fitted once on the whole training cohort and applied unchanged, so both
are tested on data neither has seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseq.contracts.evaluation import (
    BaselineFit,
    Cohort,
    EvaluationDocument,
    Exclusion,
    TaskRecord,
)
from medseq.contracts.run import ModelCard
from medseq.errors import CacheError, InputDataError
from medseq.evaluation.baseline import relative_volume_change
from medseq.evaluation.evaluate import (
    EvaluationSettings,
    ScoredPatient,
    evaluation_document,
    fit_full_baseline,
    fit_full_feature_baseline,
    model_provenance,
)
from medseq.evaluation.feature_baseline import FeatureModel
from medseq.evaluation.rundir import forecast_pairs, read_predictions, require_run
from medseq.training.labels import PARTIAL_MASKS
from medseq.training.targets import EARLY_KINDS, LabelSpec, early_target
from medseq.training.targets import Exclusion as Undecided


def evaluate_external(
    run_dir: Path, cache_dir: Path, settings: EvaluationSettings | None = None, *,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationDocument:
    """Score every usable patient of ``cache_dir`` with the run's all-patient model
    (``progress(scored, total)`` after each)."""
    import numpy as np

    from medseq.contracts.cache import read_manifest
    from medseq.models.inference import load_model, predict_patient

    settings = settings or EvaluationSettings()
    run_dir = require_run(run_dir)
    if not (run_dir / "model.safetensors").is_file():
        raise CacheError("no all-patient model (model.safetensors) to evaluate externally",
                         path=run_dir)
    baseline = fit_full_baseline(read_predictions(run_dir), run_dir=run_dir)
    manifest = read_manifest(cache_dir)
    _check_settings(run_dir, cache_dir, manifest)
    records = manifest.ok_patients()
    model = load_model(run_dir)
    found = _labels(cache_dir, records, model.card)
    labels, times, excluded = found.labels, found.times, found.excluded
    features_model = _feature_model(run_dir)
    scored: list[ScoredPatient] = []
    for n, record in enumerate(records, start=1):
        pid = record.patient_id
        if pid not in labels:
            continue
        burden = [tp.lesion_volume_ml for tp in sorted(record.timepoints, key=lambda t: t.index)]
        change = relative_volume_change(burden)
        if not record.crops or not record.targets:
            excluded.append({"patient_id": pid, "reason": "no lesion crops"})
            continue
        if not record.has_mask:
            excluded.append({"patient_id": pid, "reason": PARTIAL_MASKS})
            continue
        if change is None:
            excluded.append({"patient_id": pid, "reason": "fewer than two scans"})
            continue
        path = Path(cache_dir) / record.crops
        try:
            crops = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise CacheError(f"unreadable crops ({err})", path=path) from None
        days = [tp.days for tp in sorted(record.timepoints, key=lambda t: t.index)]
        result = predict_patient(model, crops, days, burden_ml=burden)
        forecast = result.get("forecast_ml", [])
        pairs = tuple(forecast_pairs(burden, forecast))
        features = result.get("features")
        scored.append(ScoredPatient(
            patient_id=pid, fold=None, label=labels[pid],
            probability=float(result["probability"]),
            baseline_probability=baseline.predict([change])[0], size_change=change,
            forecast_pairs=pairs,
            feature_probability=(features_model.predict([features])[0]
                                 if features_model is not None and features else None),
            feature_score=(features_model.score([features])[0]
                           if features_model is not None and features else None),
            risk=result.get("risk"), time_days=times.get(pid),
            event=bool(labels[pid]) if pid in times else None,
        ))
        if progress is not None:
            progress(n, len(records))
    if not scored:
        raise InputDataError("no patient of the external cohort can be evaluated (each needs "
                             "a label, lesion crops and two scans)", path=cache_dir)
    task = TaskRecord(label_kind=model.card.label.kind, observe=model.card.inputs.observe,
                      n_determined=found.determined)
    doc = evaluation_document(scored, settings, cohort=Cohort.EXTERNAL, task=task)
    doc.data = Path(cache_dir).resolve().name
    doc.excluded = [Exclusion.model_validate(row) for row in excluded]
    doc.model = model_provenance(run_dir)
    doc.baseline_model = BaselineFit.model_validate(baseline.as_dict())
    return doc


def _check_settings(run_dir: Path, cache_dir: Path, manifest: Any) -> None:
    """Refuse a cache preprocessed with other settings than the model's training cache: its
    crops (size, spacing, intensity window) would not be what the model learned from."""
    from medseq.config import config_differences
    from medseq.contracts.run import read_card

    card = read_card(run_dir)
    wanted = getattr(card, "preprocess_config_hash", None)
    if wanted is None or wanted == manifest.config_hash:
        return
    differences = config_differences(dict(getattr(card, "preprocess_config", None) or {}),
                                     manifest.config)
    raise CacheError(f"preprocessed with other settings than the run's training cache "
                     f"({differences}); preprocess the external cohort again with the run's "
                     f"settings (model.json preprocess_config in {run_dir})", path=cache_dir)


def _feature_model(run_dir: Path) -> FeatureModel | None:
    """The feature baseline fitted on the whole training cohort, when its predictions carry
    measurement features (applied unchanged to the external cohort, like size-only)."""
    try:
        return fit_full_feature_baseline(read_predictions(run_dir), run_dir=run_dir)
    except InputDataError:
        return None


@dataclass(frozen=True)
class ExternalLabels:
    """The external cohort's labels, progression times and exclusions."""

    labels: dict[str, int]
    times: dict[str, float]
    excluded: list[dict[str, str]]
    determined: int = 0
    """Patients left out because their observed scans already decide the label."""


def _labels(cache_dir: Path, records: list[Any], card: ModelCard) -> ExternalLabels:
    """The label the model was trained on: for an early-prediction model the same rule on the
    cache's tracking (:func:`medseq.training.targets.early_target`, patients whose observed
    scans decide it left out); otherwise manifest labels when any patient has one, else the
    label rule on the cache's tracking (:mod:`medseq.tracking.outcome`)."""
    excluded: list[dict[str, str]] = []
    if card.label.kind in EARLY_KINDS:
        return _early_labels(cache_dir, records, card)
    times: dict[str, float] = {}
    if any(r.label is not None for r in records):
        labels = {r.patient_id: int(r.label) for r in records if r.label is not None}
        excluded += [{"patient_id": r.patient_id, "reason": "no label"}
                     for r in records if r.label is None]
        return ExternalLabels(labels, times, excluded)
    from medseq.tracking.outcome import tracking_labels
    from medseq.tracking.stored import tracks_for_cache

    labels, without = tracking_labels(tracks_for_cache(Path(cache_dir)),
                                      [r.patient_id for r in records])
    excluded += [{"patient_id": pid, "reason": reason} for pid, reason in without.items()]
    return ExternalLabels(labels, times, excluded)


def _early_labels(cache_dir: Path, records: list[Any], card: ModelCard) -> ExternalLabels:
    from medseq.tracking.stored import tracks_for_cache

    label = card.label
    spec = LabelSpec(kind=label.kind, observe=card.inputs.observe,
                     landmark_days=label.landmark_days or 180.0,
                     landmark_window_days=label.landmark_window_days or 45.0)
    by_id = {p.patient_id: p for p in tracks_for_cache(Path(cache_dir)).patients}
    labels: dict[str, int] = {}
    times: dict[str, float] = {}
    excluded: list[dict[str, str]] = []
    determined = 0
    for record in records:
        patient = by_id.get(record.patient_id)
        if patient is None:
            excluded.append({"patient_id": record.patient_id, "reason": "not tracked"})
            continue
        target = early_target(patient, spec, task=card.architecture.task)
        if isinstance(target, Undecided):
            excluded.append({"patient_id": record.patient_id, "reason": target.reason})
            determined += target.determined
        else:
            labels[record.patient_id] = target.label
            if target.time_days is not None:
                times[record.patient_id] = target.time_days
    return ExternalLabels(labels, times, excluded, determined)
