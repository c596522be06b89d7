"""`medseq predict`: one patient (or a cohort with --all) end to end, machine-readable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from medseq.commands._common import parse_shard, reports_errors
from medseq.console import stderr, stdout_console
from medseq.errors import InputDataError, UsageError
from medseq.processes import raising_on_termination


@reports_errors
@raising_on_termination()  # SIGTERM/SIGHUP remove the temporary folder, as Ctrl-C does
def command(
    study: Path | None = typer.Argument(
        None, help="One patient: a DICOM tree, NIfTI layout or manifest CSV (a cohort with --all)."
    ),
    model: Path | None = typer.Option(
        None, "--model",
        help="Training run directory (default: the newest under ./runs/ or ./medseq-demo/runs/)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Write the prediction as JSON to stdout."),
    all_patients: bool = typer.Option(
        False, "--all", help="Predict every patient of STUDY; one JSON line per patient."
    ),
    shard: str | None = typer.Option(
        None, "--shard",
        help="With --all: only part K of N (K/N, or `auto` in a SLURM array); with -o FILE "
             "it writes FILE.shards/, joined by --merge FILE."),
    merge: Path | None = typer.Option(
        None, "--merge", metavar="FILE",
        help="Join the shards of predict --all -o FILE into FILE."),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="With --all: write the JSON lines to this file."
    ),
    series: str | None = typer.Option(
        None, "--series", help="Regular expression on SeriesDescription choosing DICOM series."
    ),
    keep_ids: bool = typer.Option(
        False, "--keep-ids", help="Report the input's patient ids instead of pseudonyms."
    ),
    tracker: Path | None = typer.Option(
        None, "--tracker", metavar="TRACKRUN",
        help="A tracker from medseq train-tracker, or 'bundled': segments every scan without "
             "a mask (a baseline mask is enough)."),
) -> None:
    """Predict treatment response for one patient (or a cohort with --all).

    Runs discovery, the model's preprocessing (in a temporary folder, removed afterwards),
    lesion tracking with RECIST 1.1, and the model.

    Prints the pseudonymous id, timepoints, lesion tracks, RECIST per follow-up, the response
    probability and class, the forecast next lesion burden, model provenance and warnings.
    A patient of the training cohort is scored by the fold model that held it out.

    Example: medseq predict scans/patient_007 --model runs/demo --json
    """
    if merge is not None:
        if study is not None or shard is not None or output is not None:
            raise UsageError("--merge FILE takes no STUDY, --shard or -o")
        _merge(merge)
        return
    if study is None:
        raise UsageError("give STUDY (or --merge FILE)")
    shard_kn = parse_shard(shard)
    if not all_patients and (shard_kn is not None or output is not None):
        raise UsageError("--shard and -o go with --all")
    if not study.exists():
        raise InputDataError("no such file or folder", path=study)
    from medseq.predict import load_run, predict_one, resolve_run

    run_dir = resolve_run(model)
    if model is None:
        stderr.print(f"using the newest trained run, {run_dir} (--model chooses another)",
                     markup=False, highlight=False)
    run = load_run(run_dir)
    if all_patients:
        _predict_all(study, run, shard_kn, output, series=series, keep_ids=keep_ids,
                     tracker=tracker)
        return
    from medseq.contracts.prediction import prediction_json

    doc = predict_one(study, run, series=series, keep_ids=keep_ids, tracker=tracker)
    for message in doc.warnings:
        stderr.print(f"[yellow]warning:[/yellow] {message}", markup=True, highlight=False)
    text = prediction_json(doc, indent=2)
    if as_json:
        typer.echo(text)
    else:
        print_summary(json.loads(text))


def _predict_all(study: Path, run: Any, shard: tuple[int, int] | None, output: Path | None,
                 *, series: str | None, keep_ids: bool,
                 tracker: Path | None = None) -> None:
    from medseq.contracts.prediction import (
        PredictionFailure,
        PredictLine,
        prediction_json,
        write_prediction_lines,
    )
    from medseq.predict import predict_cohort
    from medseq.progress import ProgressBar

    lines: list[PredictLine] = []
    failed = 0
    part = (output, shard) if shard is not None and output is not None else None
    on_plan = None
    if part is not None:
        from medseq.predict_shards import finish_shard, start_shard

        settings = {"run": str(run.run_dir.resolve()), "study": str(study.resolve()),
                    "series": series, "keep_ids": keep_ids}
        if tracker is not None:  # shards made with another tracker must not be merged
            settings["tracker"] = str(tracker)

        def on_plan(cohort: list[str], patients: list[str]) -> None:
            assert part is not None
            start_shard(*part, settings=settings, cohort=cohort, patients=patients)

    with ProgressBar("predict", unit="patients") as bar:
        for doc in predict_cohort(study, run, shard=shard, series=series, keep_ids=keep_ids,
                                  on_patient=bar.update, on_plan=on_plan,
                                  tracker=tracker):
            if isinstance(doc, PredictionFailure):
                failed += 1
                stderr.print(f"[yellow]warning:[/yellow] {doc.patient_id}: {doc.error}",
                             markup=True, highlight=False)
            lines.append(doc)
            if output is None:
                typer.echo(prediction_json(doc))
    if part is not None:  # the merge judges the cohort as a whole
        path = finish_shard(*part, "".join(prediction_json(d) + "\n" for d in lines))
        stderr.print(f"wrote {len(lines)} predictions to {path}" +
                     (f" ({failed} failed)" if failed else "") +
                     f"; after every shard: medseq predict --merge {output}", highlight=False)
        return
    if lines and failed == len(lines):
        raise InputDataError(f"no patient could be predicted ({failed} failed)", path=study)
    if output is not None:
        write_prediction_lines(output, lines)
        stderr.print(f"wrote {len(lines)} predictions to {output}" +
                     (f" ({failed} failed)" if failed else ""), highlight=False)


def _merge(output: Path) -> None:
    """``predict --merge FILE``: the shards' JSON lines into FILE, in one process's order."""
    from medseq.io.atomic import write_text_atomic
    from medseq.predict_shards import merge_lines

    text, shards = merge_lines(output)
    rows = [json.loads(line) for line in text.splitlines()]
    failed = sum(1 for row in rows if "error" in row)
    if rows and failed == len(rows):
        raise InputDataError(f"no patient could be predicted ({failed} failed)", path=output)
    write_text_atomic(output, text)
    stderr.print(f"merged {shards} shard(s): wrote {len(rows)} predictions to {output}" +
                 (f" ({failed} failed)" if failed else ""), highlight=False)


def print_summary(doc: dict[str, Any]) -> None:
    """A human summary of one prediction on stdout, from its JSON form."""
    from rich.table import Table

    console = stdout_console()
    pred = doc["prediction"]
    console.print(f"[bold]Patient {doc['patient_id']}[/bold] ({doc['modality']}, "
                  f"{len(doc['timepoints'])} scans, days "
                  f"{', '.join(str(tp['days']) for tp in doc['timepoints'])})")
    what = {"best_after": "Predicted response after the observed scans",
            "landmark": "Predicted response at the landmark",
            "progression": "Predicted progression"}.get(pred.get("label_kind", ""),
                                                         "Predicted response")
    seen = pred.get("observed_scans")
    console.print(f"{what}: [bold]{pred['class']}[/bold] "
                  f"(probability {pred['probability']:.3f}, threshold {pred['threshold']}"
                  + (f"; from the first {seen} scans)" if seen else ")"))
    if pred["forecast_next_ml"] is not None:
        console.print(f"Forecast lesion burden at the next scan: {pred['forecast_next_ml']:.2f} mL")
    table = Table(title="RECIST 1.1 per scan")
    for col in ("scan", "day", "lesions", "SOD mm", "vs baseline", "vs nadir", "new", "response",
                "volume mL"):
        table.add_column(col, justify="right")
    for r in doc["recist"]:
        table.add_row(str(r["timepoint"]), str(r["days"]), str(r["lesions"]), _n(r["sod_mm"], 1),
                      _pct(r["change_from_baseline_pct"]), _pct(r["change_from_nadir_pct"]),
                      "yes" if r["new_lesions"] else "no", r["response"] or "baseline",
                      _n(r["total_volume_ml"], 2))
    console.print(table)
    console.print(f"Best overall response so far: {doc['best_overall_response']}")
    tracks = Table(title="Tracked lesions (volume mL per scan)")
    tracks.add_column("track")
    days = [tp["days"] for tp in doc["timepoints"]]
    for d in days:
        tracks.add_column(f"day {d}", justify="right")
    per: dict[str, dict[int, float]] = {}
    targets = set(doc["targets"])
    for row in doc["lesions"]:
        if row["volume_ml"] is not None:
            vols = per.setdefault(row["track_id"], {})
            vols[row["days"]] = vols.get(row["days"], 0.0) + row["volume_ml"]
    for track, vols in sorted(per.items()):
        name = f"{track} (target)" if track in targets else track
        tracks.add_row(name, *(_n(vols.get(d), 2) for d in days))
    console.print(tracks)
    m = doc["model"]
    console.print(f"Model: {m['used']} of run {m['run']} (medseq {m['medseq_version']}, "
                  f"config {str(m['config_hash'])[:19]})")


def _n(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:+.1f}%"
