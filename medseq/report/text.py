"""The report's prose and tables: cohort, methods (TRIPOD+AI), metrics, folds, provenance."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medseq import __version__
from medseq.contracts.evaluation import ClassifierMetrics, EvaluationDocument, NamedComparison
from medseq.contracts.run import ModelCard, ModelConfig
from medseq.report.inputs import RunInputs


def cohort(inputs: RunInputs) -> dict[str, Any]:
    """The cohort paragraph: who was evaluated, excluded, scanned and how they responded."""
    evaluation, predictions, manifest = inputs.evaluation, inputs.predictions, inputs.manifest
    tracks, training = inputs.tracks, inputs.training_notes
    n = evaluation.n_patients
    pos = evaluation.n_responders
    excluded = evaluation.excluded
    reasons = Counter(e.reason for e in excluded)
    trained_out = training.excluded_summary
    scans = [len(p.days) for p in predictions.values() if p.days]
    follow = [p.days[-1] for p in predictions.values() if p.days]
    modality = "n/a"
    n_cache = len(predictions)
    if manifest is not None:
        ok = manifest.ok_patients()
        n_cache = len(manifest.patients)
        scans = [len(r.timepoints) for r in ok] or scans
        follow = [max(tp.days for tp in r.timepoints) for r in ok if r.timepoints] or follow
        modality = ", ".join(f"{m} ({c})" for m, c in Counter(r.modality for r in ok).items())
    lesions = [
        sum(1 for row in t.get("lesions", []) if row.get("timepoint") == _first_tp(t))
        for t in tracks.values() if t.get("tracked")
    ]
    bor = Counter(str(t.get("best_overall_response")) for t in tracks.values())
    return {
        "n_patients": n,
        "n_responders": pos,
        "n_nonresponders": n - pos,
        "n_cache": n_cache,
        "n_excluded": len(excluded) + len(training.excluded),
        "exclusions": "; ".join(filter(None, [
            ", ".join(f"{c} {r}" for r, c in reasons.most_common()),
            f"training {trained_out}" if trained_out else ""])),
        "label_source": training.label_source or "n/a",
        "scans": _summary(scans, ""),
        "followup": _summary(follow, " days"),
        "lesions": _summary(lesions, "") if lesions else "n/a (no tracking)",
        "modality": modality,
        "task": task_text(evaluation),
        "bor": ", ".join(f"{k} {bor[k]}" for k in ("CR", "PR", "SD", "PD", "NE") if bor[k])
        or "n/a (no tracking)",
    }


def methods(inputs: RunInputs, *, keep_ids: bool) -> list[tuple[str, str]]:
    """TRIPOD+AI essentials in plain sentences."""
    evaluation, card, config, manifest = (inputs.evaluation, inputs.card, inputs.config,
                                          inputs.manifest)
    settings = evaluation.settings
    pre = (manifest.config if manifest is not None
           else card.preprocess_config if card is not None else {})
    fingerprint = manifest.fingerprint if manifest is not None else {}
    observe = card.inputs.observe if card is not None else None
    n_folds = len(set(inputs.splits.values()))
    rows = [
        ("Data source", "Longitudinal scans with lesion masks, preprocessed by medseq "
         f"({_cache_text(inputs.cache_dir)}); "
         f"{'original' if keep_ids else 'pseudonymised'} patient ids, days from baseline."),
        ("Preprocessing", _preprocess_text(pre, fingerprint)),
        ("Outcome", _outcome_text(card, observe) + " RECIST 1.1: targets are up to 5 largest "
         "measurable lesions at baseline; PR <= -30% sum of diameters from baseline; PD >= +20% "
         "and +5 mm from the nadir or a new lesion."),
        ("Predictors", "Lesion-centred crops (image and mask) of "
         + (f"the first {observe} scans" if observe else "all scans")
         + (", the lesion measurements beside them (volume, diameters, rim and core HU and "
            "their changes) and per-scan burden, lesion count and new-lesion flag"
            if card is not None and card.architecture.measurements else "")
         + ", with days since baseline and since the previous scan."),
        ("Model", _model_text(card.architecture if card is not None else None)),
        ("Training", _training_text(config)),
        ("Sample size", f"{evaluation.n_patients} patients evaluated, "
         f"{evaluation.n_responders} responders; "
         f"{len(evaluation.excluded)} excluded (no label or fewer than two scans)"
         + (f", of whom {evaluation.task.n_determined} because the observed scans already "
            "decide their label" if evaluation.task is not None and evaluation.task.n_determined
            else "") + "."),
        ("Validation", f"{n_folds}-fold patient-level cross-validation (stratified by outcome"
         + (f", seed {config.get('seed')}" if config.get("seed") is not None else "")
         + "); every metric is computed out-of-fold, so no patient is scored by a model "
         "that saw it. An all-patient model is saved for new patients."),
        ("Performance measures", "AUC with a stratified bootstrap 95% CI "
         f"({settings.bootstrap_resamples} resamples, seed "
         f"{settings.bootstrap_seed}); balanced accuracy, sensitivity and "
         f"specificity at p >= {settings.threshold}; Brier score; calibration slope "
         "and intercept by logistic recalibration; confusion matrix; forecast MAE of the next "
         "scan's total lesion volume (mL)."),
        ("Comparator", "Size-only baseline: logistic regression on the relative change of the "
         "total lesion volume between the first two scans, fitted on the same folds"
         + ("; classical feature model: " + settings.feature_baseline
            if settings.feature_baseline else "")
         + "; every AUC difference is tested with DeLong's test. The forecast is compared with "
         "persistence (the last burden carried forward) on the same scan pairs"
         + (f" ({settings.forecast_test})" if settings.forecast_test else "") + "."),
        ("Limitations", "The outcome is derived from the same scans the model sees (from the "
         "second scan on), as in the size-only baseline; cross-validation estimates internal "
         "validity only, so an external cohort (medseq evaluate RUN --data CACHE) is needed "
         "before any clinical use."),
    ]
    return rows


def metrics_header(evaluation: EvaluationDocument) -> list[str]:
    """Column names of the pooled metrics table: the feature model only where it was fitted."""
    feature = ["classical feature model"] if evaluation.pooled.feature_model is not None else []
    return ["metric", "model", "size-only baseline", *feature]


def metrics_rows(evaluation: EvaluationDocument) -> list[list[str]]:
    """The pooled metrics table: the model beside every baseline, then the DeLong tests."""
    pooled = evaluation.pooled
    columns = [pooled.model, pooled.baseline]
    if pooled.feature_model is not None:
        columns.append(pooled.feature_model)
    blanks = [""] * (len(columns) - 1)

    def cm(m: ClassifierMetrics) -> str:
        c = m.confusion
        return f"TP {c.tp} / FP {c.fp} / TN {c.tn} / FN {c.fn}"

    rows = [
        ["AUC (95% CI)", *(m.auc_text() for m in columns)],
        ["balanced accuracy", *(number(m.balanced_accuracy) for m in columns)],
        ["sensitivity", *(number(m.sensitivity) for m in columns)],
        ["specificity", *(number(m.specificity) for m in columns)],
        ["Brier score (lower is better)", *(number(m.brier) for m in columns)],
        ["calibration slope (ideal 1)", *(number(m.calibration.slope) for m in columns)],
        ["calibration intercept (ideal 0)", *(number(m.calibration.intercept) for m in columns)],
        ["confusion matrix", *(cm(m) for m in columns)],
    ]
    comparisons = pooled.comparisons or [NamedComparison(first="model", second="size-only",
                                                         **pooled.comparison.model_dump())]
    for c in comparisons:
        p = c.p_value
        rows.append([f"AUC difference {c.first} - {c.second}, DeLong p",
                     f"{number(c.auc_difference)}, p = {'n/a' if p is None else p_value(p)}",
                     *blanks])
    rows.append(["forecast MAE, next scan (mL)", number(pooled.forecast.mae_ml), "n/a",
                 *blanks[1:]])
    return rows


def forecast_rows(evaluation: EvaluationDocument) -> list[list[str]]:
    """The forecast table: the model's next-scan forecast beside persistence."""
    f = evaluation.pooled.forecast
    rows = [["model forecast", mae_text(f.mae_ml, f.mae_ci)]]
    if f.persistence is not None:
        rows.append(["persistence (last burden carried forward)",
                     mae_text(f.persistence.mae_ml, f.persistence.mae_ci)])
    return rows


def forecast_beats_persistence(evaluation: EvaluationDocument) -> bool:
    """Whether the report may show the forecast: only where it beats persistence."""
    persistence = evaluation.pooled.forecast.persistence
    return persistence is not None and persistence.beats is True


def forecast_sentence(evaluation: EvaluationDocument) -> str:
    """Whether the forecast beats persistence, with both MAEs, in one sentence."""
    f = evaluation.pooled.forecast
    persistence = f.persistence
    if persistence is None:
        return ("The forecast was not compared with persistence (this evaluation.json predates "
                "that comparison; run medseq evaluate again), so it is not shown.")
    if f.mae_ml is None or persistence.mae_ml is None:
        return "No scan pair has a forecast to compare with persistence, so none is shown."
    both = (f"MAE {f.mae_ml:.2f} mL against {persistence.mae_ml:.2f} mL for carrying the last "
            f"burden forward, {persistence.test} p = "
            f"{'n/a' if persistence.p_value is None else p_value(persistence.p_value)}")
    if persistence.beats:
        return f"The forecast beats persistence ({both})."
    return (f"The forecast does not beat persistence ({both}), so the forecast plots are not "
            "shown.")


def survival_rows(evaluation: EvaluationDocument) -> list[list[str]]:
    """C-index and time-dependent AUC per risk score (``progression`` labels; else none)."""
    s = evaluation.pooled.survival
    if s is None:
        return []
    return [[name, ci_text(score.c_index, score.c_index_ci),
             ci_text(score.td_auc, score.td_auc_ci)]
            for name, score in (("model", s.model),
                                ("size-only (relative burden change)", s.baseline),
                                ("classical feature model", s.feature_model))
            if score is not None]


def task_text(evaluation: EvaluationDocument) -> str:
    """Label kind, scans observed and patients already decided, in words."""
    task = evaluation.task
    if task is None:
        return "n/a (evaluation.json predates it)"
    observe = f"the first {task.observe} scans" if task.observe else "all scans"
    return (f"{task.label_kind}, from {observe}; {task.n_determined} patients excluded because "
            "the observed scans already decide their label")


def fold_rows(evaluation: EvaluationDocument) -> list[list[str]]:
    """One row per cross-validation fold."""
    features = any(f.feature_model is not None for f in evaluation.folds)
    return [
        [str(f.fold), str(f.n_patients), str(f.n_responders), number(f.model.auc),
         number(f.baseline.auc),
         *([number(f.feature_model.auc if f.feature_model else None)] if features else []),
         number(f.model.brier), number(f.baseline.brier), number(f.forecast.mae_ml),
         number(f.forecast.persistence.mae_ml if f.forecast.persistence else None)]
        for f in evaluation.folds
    ]


def fold_header(evaluation: EvaluationDocument) -> list[str]:
    """Column names of the per-fold table."""
    features = any(f.feature_model is not None for f in evaluation.folds)
    return ["fold", "patients", "responders", "AUC model", "AUC size-only",
            *(["AUC feature model"] if features else []), "Brier model", "Brier size-only",
            "forecast MAE (mL)", "persistence MAE (mL)"]


def mae_text(value: float | None, ci: tuple[float, float] | None) -> str:
    """``1.23 (0.98-1.51)`` mL, or ``n/a``."""
    return ci_text(value, ci, digits=2)


def ci_text(value: float | None, ci: tuple[float, float] | None, *, digits: int = 3) -> str:
    """``0.941 (0.905-0.969)``: a value with its confidence interval, or ``n/a``."""
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" + (f" ({ci[0]:.{digits}f}-{ci[1]:.{digits}f})" if ci else "")


def provenance(inputs: RunInputs, *, keep_ids: bool) -> list[tuple[str, str]]:
    """Versions, hashes and folders (names only unless ``keep_ids``)."""
    run_dir, card, cache_dir = inputs.run_dir, inputs.card, inputs.cache_dir
    rows = [
        ("medseq (report)", __version__),
        ("medseq (model)", card.medseq_version if card is not None else "n/a"),
        ("run", str(run_dir.resolve()) if keep_ids else run_dir.name),
        ("cache", (str(cache_dir) if keep_ids else cache_dir.name) if cache_dir else "n/a"),
        ("preprocessing config hash", (card and card.preprocess_config_hash) or "n/a"),
        ("model config hash", (card and card.config_hash) or "n/a"),
        ("evaluation created", inputs.evaluation.created),
    ]
    return rows


def number(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals; ``n/a`` for None and non-finite values."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def percent(value: Any) -> str:
    """A signed percentage with one decimal; empty for None."""
    return "" if value is None else f"{float(value):+.1f}%"


def p_value(p: float) -> str:
    """A p-value with three decimals, ``<0.001`` below that."""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _preprocess_text(pre: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> str:
    parts = ["canonical RAS orientation", "rigid registration of every follow-up to the baseline"]
    spacing = fingerprint.get("target_spacing") or fingerprint.get("spacing") or pre.get(
        "spacing")
    if spacing:
        parts.append(f"resampled to {spacing} mm")
    crop = pre.get("crop_size") or pre.get("crop")
    if crop:
        parts.append(f"lesion-centred crops of {crop} voxels")
    return "; ".join(parts) + "."


def _model_text(arch: ModelConfig | None) -> str:
    if arch is None:
        return "n/a (no model.json)"
    return (f"{arch.encoder} 3D CNN encoder shared across scans (embedding "
            f"{arch.embed}, {arch.pooling} pooling over lesions), "
            f"{arch.cell.upper()} with {arch.hidden} hidden units and "
            f"time input '{arch.time}'; heads: response ({arch.task}) and "
            "next-scan log lesion volume.")


def _training_text(config: Mapping[str, Any]) -> str:
    if not config:
        return "n/a (no config.yaml)"
    keys = ("epochs", "batch_size", "folds", "seed", "observe", "forecast_weight")
    found = [f"{k} {config[k]}" for k in keys if k in config]
    opt = config.get("optimiser") or config.get("optimizer")
    if isinstance(opt, Mapping):
        found.append(f"optimiser {opt.get('name', 'AdamW')} (lr {opt.get('lr', '?')}, "
                     f"weight decay {opt.get('weight_decay', '?')})")
    return "; ".join(found) + "." if found else "see config.yaml in the run directory."


def _first_tp(track: Mapping[str, Any]) -> int | None:
    tps = [row.get("timepoint") for row in track.get("lesions", [])]
    return min((t for t in tps if t is not None), default=None)


def _summary(values: Sequence[float], unit: str) -> str:
    if not values:
        return "n/a"
    med = statistics.median(values)
    return f"median {med:g}{unit} (range {min(values):g}-{max(values):g})"


def _cache_text(cache_dir: Path | None) -> str:
    """Name the cache folder (never its full path: that can hold identifiers)."""
    return f"cache folder '{cache_dir.name}'" if cache_dir else "cache not found"


def _outcome_text(card: ModelCard | None, observe: int | None) -> str:
    """What the label means, from the model card's ``label``."""
    label = card.label if card is not None else None
    after = f"the first {observe} scans" if observe else "the observed scans"
    if label is None or label.kind in ("overall", "given"):
        text = ("Responder = best overall response CR or PR over all of a patient's scans."
                if label is None or label.kind == "overall" else
                "Labels as given by the user's labels CSV.")
        return text
    if label.kind == "best_after":
        return (f"Responder = best overall response CR or PR over the scans after {after}; "
                "patients whose observed scans already show a response or progression are "
                "left out.")
    if label.kind == "landmark":
        return (f"Responder = response CR or PR at the scan after {after} nearest day "
                f"{label.landmark_days:g} (within {label.landmark_window_days:g} days); "
                "progression before it counts as PD.")
    return (f"Time from the last of {after} to progression (PD), censored at the last scan; "
            "patients who progressed within the observed scans are left out.")
