"""`medseq preprocess`: register, resample, normalise and crop a cohort into a resumable cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from medseq.commands._common import parse_shard, reports_errors
from medseq.errors import ExitCode, UsageError


@reports_errors
def command(
    input_path: Path | None = typer.Argument(
        None, metavar="IN", help="DICOM tree, NIfTI layout folder or manifest CSV."),
    output: Path | None = typer.Option(None, "-o", "--output", metavar="CACHE",
                                       help="Cache folder (created; reruns update it)."),
    config_file: Path | None = typer.Option(
        None, "--config", metavar="FILE", help="YAML settings (docs/preprocess.md)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Patients processed in parallel."),
    shard: str | None = typer.Option(
        None, "--shard", metavar="K/N",
        help="Process only part K of N (SLURM job arrays; `auto` reads SLURM_ARRAY_TASK_*); "
             "then run --merge."),
    merge: Path | None = typer.Option(
        None, "--merge", metavar="CACHE",
        help="Write CACHE/manifest.json from the shards' records (after every --shard run)."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first failure."),
    series: str | None = typer.Option(
        None, "--series", metavar="REGEX", help="Choose DICOM series by SeriesDescription."),
    keep_ids: bool = typer.Option(
        False, "--keep-ids", help="Keep original patient ids instead of pseudonyms."),
    roi: str | None = typer.Option(
        None, "--roi", metavar="REGEX",
        help="Masks from DICOM SEG/RTSTRUCT: keep the segments/ROIs whose label matches "
             "(case-insensitive); default all (overrides the config's roi)."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Preprocess a cohort into a cache: every follow-up registered to its baseline.

    Per patient: canonical RAS orientation, resampling to the target spacing, rigid
    registration of each follow-up to the baseline, masks carried along, lesion-centred crops
    for the model. Reruns skip patients whose inputs and settings are unchanged. Exit code 2
    when any patient failed.

    Example: medseq preprocess export/ -o cache/ --workers 2

    Shards: medseq preprocess export/ -o cache/ --shard auto (one per array task), then
    medseq preprocess --merge cache/
    """
    from medseq.config import load_config
    from medseq.console import emit_json, stderr
    from medseq.io.discover import discover
    from medseq.io.writer_lock import writer_lock
    from medseq.preprocess.config import PreprocessConfig, with_roi
    from medseq.preprocess.runner import Failure, run_preprocess
    from medseq.progress import ProgressBar
    from medseq.schema import versioned

    if merge is not None:
        if input_path is not None or output is not None or shard is not None:
            raise UsageError("--merge CACHE takes no IN, -o or --shard")
        _merge(merge, json_output=json_output)
        return
    if input_path is None or output is None:
        raise UsageError("give IN and -o CACHE (or --merge CACHE)")
    shard_pair = parse_shard(shard)
    config = with_roi(load_config(PreprocessConfig, config_file), roi)
    if output.exists() and not output.is_dir():
        raise UsageError("the cache must be a folder, and this is a file", path=output)
    # Refuse a second writer before discovery, which can take minutes on a large tree.
    with writer_lock(output, shard=shard_pair, what="cache"):
        cohort = discover(input_path, series=series)
        _warn_if_reconfigured(stderr, output, config)
        if cohort.skipped:
            stderr.print(f"discovery skipped {len(cohort.skipped)} item(s); `medseq scan` lists "
                         "why", markup=False)

        def report_failure(failure: Failure) -> None:
            stderr.print(f"failed {failure.patient_id}: {failure.error}", markup=False)

        with ProgressBar("preprocess", unit="patients") as bar:
            summary = run_preprocess(
                cohort, output, config=config, workers=workers, shard=shard_pair,
                fail_fast=fail_fast, keep_ids=keep_ids, on_progress=bar.update,
                on_failure=report_failure)
    _print_summary(stderr, summary.as_dict())
    if json_output:
        emit_json(versioned(summary.as_dict()))
    if summary.failed:
        raise typer.Exit(int(ExitCode.INVALID_INPUT))


def _merge(cache: Path, *, json_output: bool) -> None:
    from medseq.console import emit_json, stderr
    from medseq.preprocess.shards import merge_cache
    from medseq.schema import versioned

    summary = merge_cache(cache)
    state = "written" if summary.changed else "already up to date"
    stderr.print(f"merged {summary.shards} shard(s): {summary.patients} patient(s), "
                 f"{summary.failed} failed; {cache / 'manifest.json'} {state}", markup=False,
                 highlight=False)
    if json_output:
        from dataclasses import asdict

        emit_json(versioned(asdict(summary)))


def _warn_if_reconfigured(console: Any, cache: Path, config: Any) -> None:
    """Say so when the cache holds patients made with other settings: they are all redone."""
    from medseq.config import config_differences, config_hash
    from medseq.contracts.cache import MANIFEST_NAME, read_manifest
    from medseq.errors import CacheError

    if not (cache / MANIFEST_NAME).is_file():
        return
    try:
        manifest = read_manifest(cache)
    except CacheError:
        return  # the run itself reports what is wrong with the cache
    if manifest.config_hash == config_hash(config) or not manifest.ok_patients():
        return
    changes = config_differences(manifest.config, config.model_dump(mode="json"))
    console.print(f"warning: {cache} was preprocessed with other settings ({changes}); every "
                  "patient is redone with the new ones (use another -o to keep that cache)",
                  markup=False, highlight=False)


def _print_summary(console: Any, data: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="preprocess summary", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("patients in input", str(data["patients"]))
    if data["shard"]:
        table.add_row(f"this shard ({data['shard']})", str(data["selected"]))
    table.add_row("processed", str(data["processed"]))
    table.add_row("skipped (up to date)", str(data["skipped"]))
    table.add_row("failed", str(data["failed_count"]))
    table.add_row("timepoints", str(data["timepoints"]))
    table.add_row("target spacing (mm)", " x ".join(f"{v:g}" for v in data["target_spacing"]))
    table.add_row("time", f"{data['seconds']:.1f} s")
    console.print(table)
    if data["stopped_early"]:
        console.print("stopped at the first failure (--fail-fast)", markup=False)
