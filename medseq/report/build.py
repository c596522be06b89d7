"""Assemble the report: read a run (and the cache it was trained on), draw, render one HTML file.

The job is split by module: :mod:`~medseq.report.inputs` reads the run's files (the stored
``evaluation.json``, ``predictions.jsonl``, ``model.json``, ``config.yaml``, ``splits.json``)
and the cache (``manifest.json``, registered scans, RECIST tracking);
:mod:`~medseq.report.text` writes the prose and tables, :mod:`~medseq.report.cohort_figures`
the cohort-level figures and :mod:`~medseq.report.patients` one section per patient. Without
the cache the report still has every cohort-level figure; the per-patient montages and RECIST
tables need it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from medseq import __version__
from medseq.report import text
from medseq.report.cohort_figures import performance_figures, response_figures
from medseq.report.inputs import id_mapper, load_inputs, omitted, select_patients
from medseq.report.patients import patient_section
from medseq.report.records import DEFAULT_MAX_PATIENTS, ReportOptions

__all__ = ["DEFAULT_MAX_PATIENTS", "ReportOptions", "build_report"]


def build_report(run_dir: Path, options: ReportOptions | None = None) -> str:
    """The report of ``run_dir`` as one self-contained HTML string."""
    options = options or ReportOptions()
    inputs = load_inputs(run_dir, options)
    display = id_mapper(inputs, keep_ids=options.keep_ids)
    selected = select_patients(options, inputs)
    show_forecast = text.forecast_beats_persistence(inputs.evaluation)
    sections = [patient_section(pid, inputs, display, keep_ids=options.keep_ids,
                                show_forecast=show_forecast)
                for pid in selected]
    context = {
        "title": "medseq response report",
        "version": __version__,
        "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "keep_ids": options.keep_ids,
        "evaluation": inputs.evaluation,
        "cohort": text.cohort(inputs),
        "methods": text.methods(inputs, keep_ids=options.keep_ids),
        "metrics_header": text.metrics_header(inputs.evaluation),
        "metrics_rows": text.metrics_rows(inputs.evaluation),
        "forecast_rows": text.forecast_rows(inputs.evaluation),
        "forecast_sentence": text.forecast_sentence(inputs.evaluation),
        "survival": inputs.evaluation.pooled.survival,
        "survival_rows": text.survival_rows(inputs.evaluation),
        "fold_header": text.fold_header(inputs.evaluation),
        "fold_rows": text.fold_rows(inputs.evaluation),
        "performance_figures": performance_figures(inputs.evaluation, options),
        "response_figures": response_figures(inputs.tracks, display),
        "patients": sections,
        "omitted": omitted(options, inputs, selected),
        "provenance": text.provenance(inputs, keep_ids=options.keep_ids),
    }
    from medseq.report.html import render

    return render(context)
