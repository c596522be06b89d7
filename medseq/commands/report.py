"""`medseq report`: one self-contained HTML report of a training run."""

from __future__ import annotations

from pathlib import Path

import typer

from medseq.commands._common import reports_errors
from medseq.console import stderr


@reports_errors
def command(
    run: Path = typer.Argument(..., help="Training run directory (from medseq train)."),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="HTML file to write (default: RUN/report.html)."
    ),
    patient: list[str] | None = typer.Option(
        None, "--patient", help="Only this patient's section (pseudonymous id); repeatable."
    ),
    keep_ids: bool = typer.Option(
        False, "--keep-ids", help="Show the cache's patient ids, paths and scan dates as stored."
    ),
    cache: Path | None = typer.Option(
        None, "--cache", help="The cache the run was trained on (default: from the run's "
        "model.json / config.yaml)."
    ),
    max_patients: int = typer.Option(
        50, "--max-patients", min=0, help="Per-patient sections when --patient is not given."
    ),
) -> None:
    """Write one self-contained HTML report of a run (images inline, no network).

    Cohort and methods (TRIPOD+AI essentials), ROC with bootstrap band beside the size-only
    baseline, calibration,
    confusion matrices, waterfall and spider plots, and per patient the RECIST table, lesion
    trajectories with the forecast and a montage of every tracked lesion over time.

    Example: medseq report runs/demo -o report.html
    """
    from medseq.io.atomic import write_text_atomic
    from medseq.report.build import ReportOptions, build_report

    options = ReportOptions(patients=tuple(patient or ()), keep_ids=keep_ids,
                            max_patients=max_patients, cache=cache)
    html = build_report(run, options)
    out = output if output is not None else run / "report.html"
    write_text_atomic(out, html)
    stderr.print(f"wrote {out} ({len(html) / 1e6:.1f} MB)")
    typer.echo(str(out))
