"""Assemble the report: read a run (and the cache it was trained on), draw, render one HTML file.

Inputs are the run directory (``evaluation.json``, computed in memory when absent,
``predictions.jsonl``, ``model.json``, ``config.yaml``, ``splits.json``) and the cache
(``manifest.json``, registered scans, and RECIST tracking computed on it with
:func:`medseq.tracking.pipeline.track_cache`). Without the cache the report still has every
cohort-level figure; the per-patient montages and RECIST tables need it.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseq import __version__
from medseq.console import warn
from medseq.contracts.cache import CacheManifest, PatientRecord, read_manifest
from medseq.errors import UsageError
from medseq.evaluation.rundir import (
    EVALUATION_NAME,
    PatientPrediction,
    find_cache,
    read_json,
    read_model_info,
    read_predictions,
    read_run_config,
    read_splits,
    require_run,
)
from medseq.report import figures

DEFAULT_MAX_PATIENTS = 50
"""Per-patient sections in one report unless ``--patient`` picks some."""
MONTAGE_LESIONS = 5
"""Tracked lesions per patient shown in the montage (targets first, then by baseline volume)."""


@dataclass(frozen=True)
class ReportOptions:
    """What ``medseq report`` was asked for."""

    patients: tuple[str, ...] = ()
    keep_ids: bool = False
    max_patients: int = DEFAULT_MAX_PATIENTS
    cache: Path | None = None
    band_resamples: int = 1000


@dataclass
class Figure:
    """One embedded figure."""

    key: str
    title: str
    caption: str
    data: str
    """Base64 PNG."""


@dataclass
class PatientSection:
    """Everything the template shows for one patient."""

    anchor: str
    display_id: str
    bor: str
    label: int | None
    probability: str
    baseline_probability: str
    fold: int | None
    forecast: str
    recist_rows: list[list[str]] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    dates: str = ""
    note: str = ""


def build_report(run_dir: Path, options: ReportOptions | None = None) -> str:
    """The report of ``run_dir`` as one self-contained HTML string."""
    options = options or ReportOptions()
    run_dir = require_run(run_dir)
    evaluation = _evaluation(run_dir)
    predictions = {p.patient_id: p for p in read_predictions(run_dir)}
    splits = read_splits(run_dir)
    splits_doc = read_json(run_dir / "splits.json")
    training_notes = splits_doc if isinstance(splits_doc, dict) else {}
    card = read_model_info(run_dir)
    config = read_run_config(run_dir)
    cache_dir = options.cache or find_cache(run_dir)
    manifest: CacheManifest | None = None
    tracks: dict[str, dict[str, Any]] = {}
    if cache_dir is None:
        warn(f"{run_dir}: the cache it was trained on is not found; pass --cache CACHE for "
             "the per-patient RECIST tables and montages")
    else:
        manifest = read_manifest(cache_dir)
        tracks = _tracking(cache_dir)
    display = _id_mapper(run_dir, cache_dir, manifest, keep_ids=options.keep_ids)
    selected = _select_patients(options, predictions, manifest)
    sections = [
        _patient_section(pid, predictions.get(pid), tracks.get(pid), evaluation, manifest,
                         cache_dir, display, keep_ids=options.keep_ids)
        for pid in selected
    ]
    context = {
        "title": "medseq response report",
        "version": __version__,
        "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "keep_ids": options.keep_ids,
        "evaluation": evaluation,
        "cohort": _cohort(evaluation, predictions, manifest, tracks, training_notes),
        "methods": _methods(evaluation, card, config, splits, manifest, cache_dir,
                            keep_ids=options.keep_ids),
        "metrics_rows": _metrics_rows(evaluation),
        "fold_rows": _fold_rows(evaluation),
        "performance_figures": _performance_figures(evaluation, options),
        "response_figures": _response_figures(tracks, display),
        "patients": sections,
        "omitted": _omitted(options, predictions, manifest, selected),
        "provenance": _provenance(run_dir, card, evaluation, cache_dir, keep_ids=options.keep_ids),
    }
    from medseq.report.html import render

    return render(context)


# ------------------------------------------------------------------------------------ inputs

def _evaluation(run_dir: Path) -> dict[str, Any]:
    path = run_dir / EVALUATION_NAME
    if path.is_file():
        data = read_json(path)
        if isinstance(data, dict) and "pooled" in data:
            return data
    from medseq.evaluation.evaluate import evaluate_run

    warn(f"{run_dir}: no {EVALUATION_NAME}; evaluating now (run medseq evaluate to keep it)")
    return evaluate_run(run_dir)


def _tracking(cache_dir: Path) -> dict[str, dict[str, Any]]:
    from medseq.tracking.pipeline import track_cache, tracks_document

    doc = tracks_document(track_cache(cache_dir))
    return {p["patient_id"]: p for p in doc["patients"]}


def _id_mapper(run_dir: Path, cache_dir: Path | None, manifest: CacheManifest | None, *,
               keep_ids: bool) -> Callable[[str], str]:
    """Cache id -> shown id: the cache's pseudonyms, or pseudonyms made now for a keep-ids cache."""
    if keep_ids or manifest is None or manifest.pseudonymised:
        return lambda pid: pid
    from medseq.contracts.cache import SALT_NAME
    from medseq.preprocess.pseudonym import load_or_create_salt, pseudonym

    key_dir = run_dir if (run_dir / SALT_NAME).is_file() else cache_dir
    if key_dir is None or not (key_dir / SALT_NAME).is_file():
        raise UsageError(f"the cache keeps original ids and no {SALT_NAME} is found to "
                         "pseudonymise them; pass --keep-ids to show them", path=run_dir)
    key = load_or_create_salt(key_dir)
    return lambda pid: pseudonym(pid, key)


def _select_patients(options: ReportOptions, predictions: Mapping[str, PatientPrediction],
                     manifest: CacheManifest | None) -> list[str]:
    everyone = sorted(set(predictions) | set(manifest.patients if manifest else ()))
    if options.patients:
        missing = [p for p in options.patients if p not in everyone]
        if missing:
            raise UsageError(f"--patient {missing[0]}: not in this run (ids are the cache's "
                             "pseudonyms, as evaluate and predict print them)")
        return list(options.patients)
    return everyone[: options.max_patients]


def _omitted(options: ReportOptions, predictions: Mapping[str, PatientPrediction],
             manifest: CacheManifest | None, selected: Sequence[str]) -> int:
    if options.patients:
        return 0
    return len(set(predictions) | set(manifest.patients if manifest else ())) - len(selected)


# ------------------------------------------------------------------------------- cohort part

def _cohort(evaluation: Mapping[str, Any], predictions: Mapping[str, PatientPrediction],
            manifest: CacheManifest | None, tracks: Mapping[str, Mapping[str, Any]],
            training: Mapping[str, Any]) -> dict[str, Any]:
    n = int(evaluation["n_patients"])
    pos = int(evaluation["n_responders"])
    excluded = evaluation.get("excluded") or []
    reasons = Counter(e.get("reason", "?") for e in excluded)
    trained_out = str(training.get("excluded_summary") or "")
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
        "n_excluded": len(excluded) + len(training.get("excluded") or {}),
        "exclusions": "; ".join(filter(None, [
            ", ".join(f"{c} {r}" for r, c in reasons.most_common()),
            f"training {trained_out}" if trained_out else ""])),
        "label_source": str(training.get("label_source", "n/a")),
        "scans": _summary(scans, ""),
        "followup": _summary(follow, " days"),
        "lesions": _summary(lesions, "") if lesions else "n/a (no tracking)",
        "modality": modality,
        "bor": ", ".join(f"{k} {bor[k]}" for k in ("CR", "PR", "SD", "PD", "NE") if bor[k])
        or "n/a (no tracking)",
    }


def _methods(evaluation: Mapping[str, Any], card: Mapping[str, Any], config: Mapping[str, Any],
             splits: Mapping[str, int], manifest: CacheManifest | None, cache_dir: Path | None,
             *, keep_ids: bool) -> list[tuple[str, str]]:
    """TRIPOD+AI essentials in plain sentences."""
    settings = evaluation.get("settings", {})
    arch = card.get("architecture") or {}
    pre = (manifest.config if manifest is not None else card.get("preprocess_config")) or {}
    fingerprint = manifest.fingerprint if manifest is not None else {}
    observe = card.get("observe")
    n_folds = len(set(splits.values()))
    rows = [
        ("Data source", "Longitudinal scans with lesion masks, preprocessed by medseq "
         f"({_cache_text(cache_dir)}); "
         f"{'original' if keep_ids else 'pseudonymised'} patient ids, days from baseline."),
        ("Preprocessing", _preprocess_text(pre, fingerprint)),
        ("Outcome", "Responder = best overall response CR or PR under RECIST 1.1 over all of a "
         "patient's scans (targets: up to 5 largest measurable lesions at baseline; PR <= -30% "
         "sum of diameters from baseline; PD >= +20% and +5 mm from the nadir or a new lesion)."),
        ("Predictors", "Lesion-centred crops (image and mask) of "
         + (f"the first {observe} scans" if observe else "all scans")
         + " with days since baseline and since the previous scan."),
        ("Model", _model_text(arch, card)),
        ("Training", _training_text(config)),
        ("Sample size", f"{evaluation['n_patients']} patients evaluated, "
         f"{evaluation['n_responders']} responders; "
         f"{len(evaluation.get('excluded') or [])} excluded (no label or fewer than two scans)."),
        ("Validation", f"{n_folds}-fold patient-level cross-validation (stratified by outcome"
         + (f", seed {config.get('seed')}" if config.get("seed") is not None else "")
         + "); every metric is computed out-of-fold, so no patient is scored by a model "
         "that saw it. An all-patient model is saved for new patients."),
        ("Performance measures", "AUC with a stratified bootstrap 95% CI "
         f"({settings.get('bootstrap_resamples', '?')} resamples, seed "
         f"{settings.get('bootstrap_seed', '?')}); balanced accuracy, sensitivity and "
         f"specificity at p >= {settings.get('threshold', 0.5)}; Brier score; calibration slope "
         "and intercept by logistic recalibration; confusion matrix; forecast MAE of the next "
         "scan's total lesion volume (mL)."),
        ("Comparator", "Size-only baseline: logistic regression on the relative change of the "
         "total lesion volume between the first two scans, fitted on the same folds; the AUC "
         "difference is tested with DeLong's test."),
        ("Limitations", "The outcome is derived from the same scans the model sees (from the "
         "second scan on), as in the size-only baseline; cross-validation estimates internal "
         "validity only, so an external cohort (medseq evaluate RUN --data CACHE) is needed "
         "before any clinical use."),
    ]
    return rows


def _metrics_rows(evaluation: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    pooled = evaluation["pooled"]
    model, base = pooled["model"], pooled["baseline"]

    def auc(m: Mapping[str, Any]) -> str:
        if m.get("auc") is None:
            return "n/a"
        lo, hi = m["auc_ci"]
        return f"{m['auc']:.3f} ({lo:.3f}-{hi:.3f})"

    def cm(m: Mapping[str, Any]) -> str:
        c = m["confusion"]
        return f"TP {c['tp']} / FP {c['fp']} / TN {c['tn']} / FN {c['fn']}"

    comparison = pooled.get("comparison", {})
    p = comparison.get("p_value")
    rows = [
        ("AUC (95% CI)", auc(model), auc(base)),
        ("balanced accuracy", _f(model.get("balanced_accuracy")),
         _f(base.get("balanced_accuracy"))),
        ("sensitivity", _f(model.get("sensitivity")), _f(base.get("sensitivity"))),
        ("specificity", _f(model.get("specificity")), _f(base.get("specificity"))),
        ("Brier score (lower is better)", _f(model.get("brier")), _f(base.get("brier"))),
        ("calibration slope (ideal 1)", _f(model["calibration"].get("slope")),
         _f(base["calibration"].get("slope"))),
        ("calibration intercept (ideal 0)", _f(model["calibration"].get("intercept")),
         _f(base["calibration"].get("intercept"))),
        ("confusion matrix", cm(model), cm(base)),
        ("AUC difference, DeLong p", f"{_f(comparison.get('auc_difference'))}, "
         f"p = {'n/a' if p is None else _p(p)}", ""),
        ("forecast MAE, next scan (mL)", _f(pooled.get("forecast", {}).get("mae_ml")), "n/a"),
    ]
    return rows


def _fold_rows(evaluation: Mapping[str, Any]) -> list[list[str]]:
    return [
        [str(f["fold"]), str(f["n_patients"]), str(f["n_responders"]), _f(f["model"]["auc"]),
         _f(f["baseline"]["auc"]), _f(f["model"]["brier"]), _f(f["baseline"]["brier"]),
         _f(f.get("forecast", {}).get("mae_ml"))]
        for f in evaluation.get("folds", [])
    ]


def _performance_figures(evaluation: Mapping[str, Any], options: ReportOptions) -> list[Figure]:
    from medseq.evaluation import metrics

    rows = evaluation.get("patients", [])
    labels = [int(r["label"]) for r in rows]
    settings = evaluation.get("settings", {})
    seed = int(settings.get("bootstrap_seed", 0))
    out: list[Figure] = []
    if labels and metrics.has_both_classes(labels):
        rocs = {}
        for name, key, side in (("model", "probability", "model"),
                                ("size-only baseline", "baseline_probability", "baseline")):
            scores = [float(r[key]) for r in rows]
            fpr, tpr = metrics.roc_curve(labels, scores)
            grid, lo, hi = metrics.bootstrap_roc_band(
                labels, scores, n_resamples=options.band_resamples, seed=seed)
            m = evaluation["pooled"][side]
            rocs[side] = figures.RocInput(name, fpr.tolist(), tpr.tolist(), grid.tolist(),
                                          lo.tolist(), hi.tolist(), float(m["auc"]),
                                          (float(m["auc_ci"][0]), float(m["auc_ci"][1])))
        out.append(_fig("roc", "ROC curves", "Out-of-fold ROC of the model (orange) and the "
                        "size-only baseline (grey); shaded: pointwise bootstrap 95% band.",
                        figures.roc_figure(rocs["model"], rocs["baseline"])))
    pooled = evaluation["pooled"]
    out.append(_fig("calibration", "Calibration", "Observed fraction of responders against the "
                    "mean predicted probability in ten equal-width bins; the dotted diagonal is "
                    "perfect calibration.",
                    figures.calibration_figure({
                        "model": pooled["model"]["calibration"]["curve"],
                        "baseline": pooled["baseline"]["calibration"]["curve"]})))
    threshold = float(settings.get("threshold", 0.5))
    out.append(_fig("confusion", "Confusion matrices", f"Responder called at p >= {threshold:g}.",
                    figures.confusion_figure({"model": pooled["model"]["confusion"],
                                              "baseline": pooled["baseline"]["confusion"]},
                                             threshold)))
    return out


def _response_figures(tracks: Mapping[str, Mapping[str, Any]],
                      display: Callable[[str], str]) -> list[Figure]:
    best: dict[str, float] = {}
    bor: dict[str, str] = {}
    spider: dict[str, tuple[list[float], list[float]]] = {}
    for pid, t in tracks.items():
        if not t.get("tracked") or not t.get("targets"):
            continue
        shown = display(pid)
        rows = [r for r in t.get("responses", []) if r.get("sod_mm") is not None]
        changes = [(r["days"], r["change_from_baseline_pct"]) for r in rows
                   if r.get("change_from_baseline_pct") is not None]
        if not changes:
            continue
        bor[shown] = str(t.get("best_overall_response"))
        best[shown] = min(c for _, c in changes)
        spider[shown] = ([float(rows[0]["days"])] + [float(d) for d, _ in changes],
                         [0.0] + [float(c) for _, c in changes])
    if not best:
        return []
    return [
        _fig("waterfall", "Waterfall plot", "Best (lowest) change of the RECIST sum of diameters "
             "from baseline per patient, coloured by best overall response.",
             figures.waterfall_figure(best, bor)),
        _fig("spider", "Spider plot", "Change of the sum of diameters from baseline at every "
             "scan; dashed lines mark -30% (partial response) and +20% (progression).",
             figures.spider_figure(spider, bor)),
    ]


# ------------------------------------------------------------------------------ per patient

def _patient_section(
    pid: str, prediction: PatientPrediction | None, track: Mapping[str, Any] | None,
    evaluation: Mapping[str, Any], manifest: CacheManifest | None, cache_dir: Path | None,
    display: Callable[[str], str], *, keep_ids: bool,
) -> PatientSection:
    scored = {r["patient_id"]: r for r in evaluation.get("patients", [])}.get(pid, {})
    record = manifest.patients.get(pid) if manifest is not None else None
    shown = display(pid)
    forecast = "n/a"
    if prediction is not None and prediction.forecast_ml:
        last = prediction.forecast_ml[-1]
        if last is not None:
            forecast = f"{last:.2f} mL (total lesion volume)"
    section = PatientSection(
        anchor="".join(ch if ch.isalnum() else "-" for ch in shown),
        display_id=shown,
        bor=str(track.get("best_overall_response")) if track else "n/a",
        label=prediction.label if prediction is not None else None,
        probability=_f(prediction.probability) if prediction is not None else "n/a",
        baseline_probability=_f(scored.get("baseline_probability")),
        fold=prediction.fold if prediction is not None else None,
        forecast=forecast,
    )
    if track is not None and not track.get("tracked", True):
        section.note = str(track.get("note", "not tracked"))
    if track is not None:
        section.recist_rows = _recist_rows(track)
    if keep_ids and record is not None:
        dates = [str((tp.model_extra or {}).get("date", "")) for tp in record.timepoints]
        if any(dates):
            section.dates = ", ".join(dates)
    days = _days(prediction, record)
    if days:
        section.figures.append(_trajectory(days, prediction, track))
    if record is not None and cache_dir is not None and track is not None and track.get(
            "tracked"):
        montage = _montage(cache_dir, record, track)
        if montage is not None:
            section.figures.append(montage)
    return section


def _recist_rows(track: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for r in track.get("responses", []):
        rows.append([
            str(r["timepoint"]), str(r["days"]), str(r.get("lesions", "")),
            _f(r.get("sod_mm"), 1), _pct(r.get("change_from_baseline_pct")),
            _pct(r.get("change_from_nadir_pct")), "yes" if r.get("new_lesions") else "no",
            r.get("response") or "baseline", _f(r.get("target_volume_ml"), 2),
            r.get("volumetric_response") or "",
        ])
    return rows


def _days(prediction: PatientPrediction | None, record: PatientRecord | None) -> list[int]:
    if record is not None and record.timepoints:
        return [tp.days for tp in sorted(record.timepoints, key=lambda tp: tp.index)]
    return list(prediction.days) if prediction is not None else []


def _trajectory(days: Sequence[int], prediction: PatientPrediction | None,
                track: Mapping[str, Any] | None) -> Figure:
    per_track: dict[str, dict[int, float]] = {}
    timepoint_days: dict[int, int] = {}
    if track is not None:
        for row in track.get("lesions", []):
            timepoint_days[row["timepoint"]] = row["days"]
            if row.get("volume_ml") is None:
                continue
            per_track.setdefault(row["track_id"], {})
            vols = per_track[row["track_id"]]
            vols[row["days"]] = vols.get(row["days"], 0.0) + float(row["volume_ml"])
    # Keep the figure readable: the five largest tracks by peak volume.
    largest = sorted(per_track, key=lambda t: -max(per_track[t].values()))[:MONTAGE_LESIONS]
    lesion_volumes = {t: [per_track[t].get(d) for d in days] for t in sorted(largest)}
    total: list[float | None] = []
    if prediction is not None and len(prediction.burden_ml) == len(days):
        total = list(prediction.burden_ml)
    elif track is not None:
        by_day = {r["days"]: r.get("total_volume_ml") for r in track.get("responses", [])}
        total = [by_day.get(d) for d in days]
    forecast = list(prediction.forecast_ml) if prediction is not None else []
    png = figures.trajectory_figure(days, lesion_volumes, total or [None] * len(days), forecast)
    return _fig("trajectory", "Lesion trajectories", "Volume of each tracked lesion (the five "
                "largest) and the total burden; orange diamonds: the model's forecast of the "
                "next scan's total burden, made at each scan.", png)


def _montage(cache_dir: Path, record: PatientRecord, track: Mapping[str, Any]) -> Figure | None:
    from medseq.report.montage import lesion_slices

    timepoints = sorted(record.timepoints, key=lambda tp: tp.index)
    centres: dict[str, dict[int, tuple[float, float, float]]] = {}
    peak: dict[str, float] = {}
    for row in track.get("lesions", []):
        c = row.get("centroid_baseline_mm")
        if c is None or any(v is None for v in c):
            continue
        centres.setdefault(row["track_id"], {})[row["timepoint"]] = (float(c[0]), float(c[1]),
                                                                     float(c[2]))
        peak[row["track_id"]] = max(peak.get(row["track_id"], 0.0),
                                    float(row.get("volume_ml") or 0.0))
    targets = [t for t in track.get("targets", []) if t in centres]
    others = sorted((t for t in centres if t not in targets), key=lambda t: -peak[t])
    chosen = (targets + others)[:MONTAGE_LESIONS]
    if not chosen:
        return None
    volumes: dict[str, Any] = {}
    lesions = []
    for t in chosen:
        radius_mm = (3.0 * max(peak[t], 1e-3) * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
        name = f"{t} (target)" if t in targets else t
        lesions.append(lesion_slices(cache_dir, timepoints, name, centres[t],
                                     half_width_mm=2.5 * radius_mm, modality=record.modality,
                                     volumes=volumes))
    png = figures.montage_figure(lesions, [tp.days for tp in timepoints])
    window = (", CT soft-tissue window W400/L40 (lung window W1500/L-600 for lesions below it)."
              if record.modality == "CT" else ".")
    return _fig("montage", "Lesion montage", "Axial slice through each tracked lesion at every "
                "scan (registered to the baseline; anterior up, patient's right on the left), "
                "mask outlined in yellow" + window, png)


# ----------------------------------------------------------------------------------- helpers

def _provenance(run_dir: Path, card: Mapping[str, Any], evaluation: Mapping[str, Any],
                cache_dir: Path | None, *, keep_ids: bool) -> list[tuple[str, str]]:
    rows = [
        ("medseq (report)", __version__),
        ("medseq (model)", str(card.get("medseq_version", "n/a"))),
        ("run", str(run_dir.resolve()) if keep_ids else run_dir.name),
        ("cache", (str(cache_dir) if keep_ids else cache_dir.name) if cache_dir else "n/a"),
        ("preprocessing config hash", str(card.get("preprocess_config_hash", "n/a"))),
        ("model config hash", str(card.get("config_hash", "n/a"))),
        ("evaluation created", str(evaluation.get("created", "n/a"))),
    ]
    return rows


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


def _model_text(arch: Mapping[str, Any], card: Mapping[str, Any]) -> str:
    if not isinstance(arch, Mapping) or not arch:
        return str(arch or "n/a (no model.json)")
    return (f"{arch.get('encoder', '?')} 3D CNN encoder shared across scans (embedding "
            f"{arch.get('embed', '?')}, {arch.get('pooling', '?')} pooling over lesions), "
            f"{arch.get('cell', 'lstm').upper()} with {arch.get('hidden', '?')} hidden units and "
            f"time input '{arch.get('time', '?')}'; heads: response ({arch.get('task', '?')}) and "
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


def _fig(key: str, title: str, caption: str, png: bytes) -> Figure:
    return Figure(key=key, title=title, caption=caption,
                  data=base64.b64encode(png).decode("ascii"))


def _first_tp(track: Mapping[str, Any]) -> int | None:
    tps = [row.get("timepoint") for row in track.get("lesions", [])]
    return min((t for t in tps if t is not None), default=None)


def _summary(values: Sequence[float], unit: str) -> str:
    if not values:
        return "n/a"
    med = statistics.median(values)
    return f"median {med:g}{unit} (range {min(values):g}-{max(values):g})"


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def _pct(value: Any) -> str:
    return "" if value is None else f"{float(value):+.1f}%"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _cache_text(cache_dir: Path | None) -> str:
    """Name the cache folder (never its full path: that can hold identifiers)."""
    return f"cache folder '{cache_dir.name}'" if cache_dir else "cache not found"
