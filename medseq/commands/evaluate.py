"""`medseq evaluate`: patient-level metrics of a training run beside every baseline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medseq.commands._common import reports_errors
from medseq.console import emit_json, stderr, stdout_console
from medseq.errors import UsageError

if TYPE_CHECKING:
    from rich.table import Table

    from medseq.contracts.evaluation import (
        Comparison,
        ConfusionRecord,
        EvaluationDocument,
        NamedComparison,
        SurvivalMetrics,
    )


@reports_errors
def command(
    run: Path = typer.Argument(..., help="Training run directory (from medseq train)."),
    data: Path | None = typer.Option(
        None, "--data", help="Evaluate the run's all-patient model on this external cache instead "
        "of the cross-validation predictions."
    ),
    as_json: bool = typer.Option(False, "--json", help="Write the evaluation as JSON to stdout."),
    bootstrap: int = typer.Option(
        2000, "--bootstrap", min=100, help="Bootstrap resamples for confidence intervals."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
) -> None:
    """Patient-level metrics of a run beside every baseline, with DeLong tests.

    AUC with bootstrap 95% CI, balanced accuracy, sensitivity, specificity, Brier score,
    calibration and confusion matrix, per fold and pooled, beside the size-only baseline and
    (when the predictions carry measurement features) the classical feature model, on the same
    patients and folds; the forecast MAE in mL beside persistence; C-index and time-dependent
    AUC for time-to-progression labels.

    Writes RUN/evaluation.json (RUN/evaluation-external-NAME.json with --data) and a table on
    stdout.

    Example: medseq evaluate runs/demo --json
    """
    from medseq.contracts.evaluation import EVALUATION_NAME, EXTERNAL_PREFIX, write_evaluation
    from medseq.evaluation.evaluate import EvaluationSettings, evaluate_run

    settings = EvaluationSettings(n_bootstrap=bootstrap, seed=seed)
    if data is None:
        doc = evaluate_run(run, settings)
        out = run / EVALUATION_NAME
    else:
        from medseq.evaluation.external import evaluate_external

        if not data.is_dir():
            raise UsageError("--data must be a preprocessed cache directory", path=data)
        from medseq.progress import ProgressBar

        with ProgressBar("evaluate", unit="patients", transient=True) as bar:
            doc = evaluate_external(run, data, settings, progress=bar.update)
        out = run / f"{EXTERNAL_PREFIX}{data.resolve().name}.json"
    write_evaluation(out, doc)
    if as_json:
        emit_json(doc.model_dump(mode="json"))
    else:
        print_tables(doc)
    stderr.print(f"wrote {out}")


def print_tables(doc: EvaluationDocument) -> None:
    """The evaluation as rich tables (classifiers, comparisons, forecast, survival, per fold)
    and the verdict, on stdout."""
    from rich.table import Table

    console = stdout_console()
    pooled = doc.pooled
    positives = ("progressed" if doc.task and doc.task.label_kind == "progression"
                 else "responders")
    title = f"{doc.cohort.value}: {doc.n_patients} patients, {doc.n_responders} {positives}"
    if doc.task is not None:
        observe = f"first {doc.task.observe} scans" if doc.task.observe else "all scans"
        title += (f"\nlabel {doc.task.label_kind}, observed {observe}; "
                  f"{doc.task.n_determined} excluded as already decided by the observed scans")
    table = Table(title=title)
    table.add_column("metric")
    columns = [("model", pooled.model), ("size-only baseline", pooled.baseline)]
    if pooled.feature_model is not None:
        columns.append(("feature model", pooled.feature_model))
    for name, _ in columns:
        table.add_column(name, justify="right")
    rows = [
        ("AUC (95% CI)", lambda m: m.auc_text()),
        ("balanced accuracy", lambda m: _num(m.balanced_accuracy)),
        ("sensitivity", lambda m: _num(m.sensitivity)),
        ("specificity", lambda m: _num(m.specificity)),
        ("Brier score", lambda m: _num(m.brier)),
        ("calibration slope", lambda m: _num(m.calibration.slope)),
        ("calibration intercept", lambda m: _num(m.calibration.intercept)),
        ("confusion TP/FP/TN/FN", lambda m: _cm(m.confusion)),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(m) for _, m in columns))
    console.print(table)
    comparisons = Table(title="DeLong tests (AUC of the first minus the second, same patients)")
    for col in ("comparison", "AUC difference", "std. error", "p"):
        comparisons.add_column(col, justify="left" if col == "comparison" else "right")
    for c in pooled.comparisons or [_as_named(pooled.comparison)]:
        comparisons.add_row(f"{c.first} vs {c.second}", _num(c.auc_difference),
                            _num(c.std_error), _p(c.p_value))
    console.print(comparisons)
    console.print(forecast_table(doc))
    if pooled.survival is not None:
        console.print(survival_table(pooled.survival))
    if doc.folds:
        console.print(fold_table(doc))
    console.print(f"Verdict: {doc.verdict}")


def forecast_table(doc: EvaluationDocument) -> Table:
    """The next-scan forecast beside persistence, with the paired test."""
    from rich.table import Table

    f = doc.pooled.forecast
    table = Table(title=f"next-scan burden forecast ({f.n_pairs} scan pairs)")
    for col in ("forecast", "MAE mL (95% CI)"):
        table.add_column(col, justify="left" if col == "forecast" else "right")
    table.add_row("model", _mae(f.mae_ml, f.mae_ci))
    persistence = f.persistence
    if persistence is not None:
        table.add_row("persistence (last burden carried forward)",
                      _mae(persistence.mae_ml, persistence.mae_ci))
        beats = {True: "yes", False: "no", None: "n/a"}[persistence.beats]
        table.caption = (f"model beats persistence: {beats} ({persistence.test}, "
                         f"p={_p(persistence.p_value)})")
    return table


def survival_table(s: SurvivalMetrics) -> Table:
    """C-index and time-dependent AUC of each risk score (``progression`` labels)."""
    from rich.table import Table

    at = "n/a" if s.at_days is None else f"{s.at_days:g} days"
    table = Table(title=f"time to progression: {s.n} patients, {s.n_events} progressed")
    for col in ("risk", "C-index (95% CI)", f"time-dependent AUC at {at} (95% CI)"):
        table.add_column(col, justify="left" if col == "risk" else "right")
    for name, score in (("model", s.model), ("size-only (relative burden change)", s.baseline),
                        ("feature model", s.feature_model)):
        if score is not None:
            table.add_row(name, _ci(score.c_index, score.c_index_ci),
                          _ci(score.td_auc, score.td_auc_ci))
    return table


def fold_table(doc: EvaluationDocument) -> Table:
    """One row per fold."""
    from rich.table import Table

    features = any(f.feature_model is not None for f in doc.folds)
    table = Table(title="per fold (out-of-fold)")
    cols = ["fold", "n", "resp.", "AUC model", "AUC size", *(["AUC feature"] if features else []),
            "Brier model", "MAE mL", "MAE persist."]
    for col in cols:
        table.add_column(col, justify="right")
    for f in doc.folds:
        persistence = f.forecast.persistence
        table.add_row(str(f.fold), str(f.n_patients), str(f.n_responders), _num(f.model.auc),
                      _num(f.baseline.auc),
                      *([_num(f.feature_model.auc if f.feature_model else None)]
                        if features else []),
                      _num(f.model.brier), _num(f.forecast.mae_ml),
                      _num(persistence.mae_ml if persistence else None))
    return table


def _as_named(comparison: Comparison) -> NamedComparison:
    from medseq.contracts.evaluation import NamedComparison

    return NamedComparison(first="model", second="size-only", **comparison.model_dump())


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _p(p: float | None) -> str:
    return "n/a" if p is None else "<0.001" if p < 0.001 else f"{p:.3f}"


def _ci(value: float | None, ci: tuple[float, float] | None) -> str:
    from medseq.report.text import ci_text

    return ci_text(value, ci)


def _mae(value: float | None, ci: tuple[float, float] | None) -> str:
    from medseq.report.text import mae_text

    return mae_text(value, ci)


def _cm(cm: ConfusionRecord) -> str:
    return f"{cm.tp}/{cm.fp}/{cm.tn}/{cm.fn}"
