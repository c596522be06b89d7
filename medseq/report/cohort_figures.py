"""The cohort-level figures: ROC, calibration and confusion (from ``evaluation.json``),
waterfall and spider (from tracking)."""

from __future__ import annotations

from collections.abc import Callable

from medseq.contracts.evaluation import ClassifierMetrics, EvaluationDocument
from medseq.report import figures
from medseq.report.inputs import Tracks
from medseq.report.records import Figure, ReportOptions, figure


def performance_figures(evaluation: EvaluationDocument, options: ReportOptions) -> list[Figure]:
    """ROC with bootstrap bands (when both classes occur), calibration, confusion matrices."""
    from medseq.evaluation import metrics

    rows = evaluation.patients
    labels = [r.label for r in rows]
    settings = evaluation.settings
    pooled = evaluation.pooled
    out: list[Figure] = []
    if labels and metrics.has_both_classes(labels):
        rocs = {}
        for name, side, m in (("model", "model", pooled.model),
                              ("size-only baseline", "baseline", pooled.baseline)):
            scores = [r.probability if side == "model" else r.baseline_probability for r in rows]
            fpr, tpr = metrics.roc_curve(labels, scores)
            grid, lo, hi = metrics.bootstrap_roc_band(
                labels, scores, n_resamples=options.band_resamples, seed=settings.bootstrap_seed)
            auc, ci = _auc(m)
            rocs[side] = figures.RocInput(name, fpr.tolist(), tpr.tolist(), grid.tolist(),
                                          lo.tolist(), hi.tolist(), auc, ci)
        out.append(figure("roc", "ROC curves", "Out-of-fold ROC of the model (orange) and the "
                          "size-only baseline (grey); shaded: pointwise bootstrap 95% band.",
                          figures.roc_figure(rocs["model"], rocs["baseline"])))
    out.append(figure("calibration", "Calibration", "Observed fraction of responders against "
                      "the mean predicted probability in ten equal-width bins; the dotted "
                      "diagonal is perfect calibration.",
                      figures.calibration_figure({
                          "model": pooled.model.calibration.curve,
                          "baseline": pooled.baseline.calibration.curve})))
    threshold = settings.threshold
    out.append(figure("confusion", "Confusion matrices", f"Responder called at p >= "
                      f"{threshold:g}.",
                      figures.confusion_figure({"model": pooled.model.confusion,
                                                "baseline": pooled.baseline.confusion},
                                               threshold)))
    return out


def response_figures(tracks: Tracks, display: Callable[[str], str]) -> list[Figure]:
    """Waterfall and spider plots of the RECIST sum of diameters; none without tracked targets."""
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
        figure("waterfall", "Waterfall plot", "Best (lowest) change of the RECIST sum of "
               "diameters from baseline per patient, coloured by best overall response.",
               figures.waterfall_figure(best, bor)),
        figure("spider", "Spider plot", "Change of the sum of diameters from baseline at every "
               "scan; dashed lines mark -30% (partial response) and +20% (progression).",
               figures.spider_figure(spider, bor)),
    ]


def _auc(m: ClassifierMetrics) -> tuple[float, tuple[float, float]]:
    """AUC and its CI; both classes occur wherever this is called, so both exist."""
    if m.auc is None or m.auc_ci is None:
        raise ValueError("no AUC although both classes occur")
    return m.auc, m.auc_ci
