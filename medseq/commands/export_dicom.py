"""``medseq export-dicom``: tracked lesions and RECIST responses as DICOM SEG and SR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from medseq.commands._common import reports_errors
from medseq.errors import UsageError


@reports_errors
def command(
    tracking: Path = typer.Argument(
        ..., metavar="TRACKING_OUT", help="Output folder of medseq track (holds tracks.json)."),
    output: Path = typer.Option(..., "-o", "--output", metavar="DIR",
                                help="Folder for <patient>/tNN_SEG.dcm and tNN_SR.dcm."),
    input_path: Path | None = typer.Option(
        None, "--input", metavar="PATH",
        help="The DICOM export the cache was made from (default: the raw input medseq track "
             "was given, when it was)."),
    cache: Path | None = typer.Option(
        None, "--cache", metavar="CACHE", help="The cache tracking used (default: the one "
        "tracks.json names)."),
    series: str | None = typer.Option(
        None, "--series", metavar="REGEX",
        help="The --series expression preprocessing used, if any."),
    keep_ids: bool = typer.Option(
        False, "--keep-ids", help="Identify patient and study as the source study does (for "
        "the hospital's PACS); default: pseudonymised."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Write each tracked timepoint as a DICOM SEG (lesion masks on the source image grid) and
    a Comprehensive 3D SR (TID 1500: long axis, short axis, volume per lesion, RECIST 1.1).

    A lesion keeps its TrackingUID and TrackingIdentifier (L1...) across all timepoints.
    Only patients whose images came from DICOM are exported; others are listed as skipped.
    Without --keep-ids the objects carry the patient's pseudonym and a new study UID.
    Described in docs/dicom-objects.md.

    Example: medseq export-dicom tracking/ -o dicom_results/ --input /data/export
    """
    from medseq.console import emit_json, stderr, warn
    from medseq.dicom_objects.export import export_run
    from medseq.dicom_objects.sources import find_sources
    from medseq.dicom_objects.tracking_input import read_tracking_run

    if output.exists() and not output.is_dir():
        raise UsageError("the output must be a folder, and this is a file", path=output)
    run = read_tracking_run(tracking, cache=cache)
    source = input_path or run.input_path
    if source is None:
        raise UsageError("tracks.json does not say where the source DICOM images are (track "
                         "ran on a cache): give the DICOM export with --input", path=tracking)
    sources = find_sources(run, source, series=series)
    summary = export_run(run, sources, output, keep_ids=keep_ids)
    for text in summary.warnings:
        warn(text)
    for patient_id, reason in summary.skipped.items():
        stderr.print(f"{patient_id}: skipped: {reason}", markup=False)
    mode = ("patient and study identification kept from the source studies (--keep-ids)"
            if keep_ids else "pseudonymised: patient ids are the cache's pseudonyms, new study "
            "UIDs, no names or dates (--keep-ids keeps the source's)")
    stderr.print(f"exported {len(summary.exported)} of {len(run.patients)} patient(s), "
                 f"{len(summary.written)} file(s) to {output}; {mode}", markup=False)
    if json_output:
        emit_json(_document(summary, output))


def _document(summary: Any, output: Path) -> dict[str, Any]:
    from medseq import __version__

    return {"medseq_version": __version__, "output": str(output),
            "identification": summary.identification,
            "exported": summary.exported,
            "files": [str(p) for p in summary.written],
            "skipped": [{"patient_id": k, "reason": v} for k, v in summary.skipped.items()]}
