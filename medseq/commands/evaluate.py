"""`medseq evaluate`: patient-level metrics of a training run beside the size-only baseline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medseq.commands._common import reports_errors
from medseq.console import emit_json, stderr, stdout_console
from medseq.errors import UsageError

if TYPE_CHECKING:
    from medseq.contracts.evaluation import ConfusionRecord, EvaluationDocument


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
    """Patient-level metrics of a run beside the size-only baseline, with a DeLong test.

    AUC with bootstrap 95% CI, balanced accuracy, sensitivity, specificity, Brier score,
    calibration and confusion matrix, per fold and pooled, on the same patients as the
    size-only baseline; plus the forecast MAE in mL.

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
    """The evaluation as two rich tables (pooled, per fold) and the verdict, on stdout."""
    from rich.table import Table

    console = stdout_console()
    pooled = doc.pooled
    table = Table(title=f"{doc.cohort.value}: {doc.n_patients} patients, "
                        f"{doc.n_responders} responders")
    table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column("size-only baseline", justify="right")
    model, base = pooled.model, pooled.baseline
    table.add_row("AUC (95% CI)", model.auc_text(), base.auc_text())
    table.add_row("balanced accuracy", _num(model.balanced_accuracy),
                  _num(base.balanced_accuracy))
    table.add_row("sensitivity", _num(model.sensitivity), _num(base.sensitivity))
    table.add_row("specificity", _num(model.specificity), _num(base.specificity))
    table.add_row("Brier score", _num(model.brier), _num(base.brier))
    table.add_row("calibration slope", _num(model.calibration.slope),
                  _num(base.calibration.slope))
    table.add_row("calibration intercept", _num(model.calibration.intercept),
                  _num(base.calibration.intercept))
    table.add_row("confusion TP/FP/TN/FN", _cm(model.confusion), _cm(base.confusion))
    table.add_row("forecast MAE (mL)", _num(pooled.forecast.mae_ml), "")
    console.print(table)
    if doc.folds:
        folds = Table(title="per fold (out-of-fold)")
        for col in ("fold", "n", "resp.", "AUC model", "AUC base", "Brier model",
                    "MAE mL"):
            folds.add_column(col, justify="right")
        for f in doc.folds:
            folds.add_row(str(f.fold), str(f.n_patients), str(f.n_responders),
                          _num(f.model.auc), _num(f.baseline.auc),
                          _num(f.model.brier), _num(f.forecast.mae_ml))
        console.print(folds)
    console.print(f"Verdict: {doc.verdict}")


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _cm(cm: ConfusionRecord) -> str:
    return f"{cm.tp}/{cm.fp}/{cm.tn}/{cm.fn}"
