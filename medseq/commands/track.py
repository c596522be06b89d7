"""``medseq track``: lesion tracking and RECIST 1.1 response from a cache (or raw input)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from medseq.commands._common import parse_shard, reports_errors
from medseq.errors import InputDataError, UsageError

MANIFEST_NAME = "manifest.json"


@reports_errors
def command(
    path: Path = typer.Argument(
        ..., metavar="PATH",
        help="A cache from medseq preprocess, or raw input (DICOM tree, NIfTI layout, manifest "
             "CSV), which is preprocessed first into OUT/cache."),
    output: Path = typer.Option(..., "-o", "--output", metavar="OUT",
                                help="Folder for lesions.csv, response.csv and tracks.json."),
    json_output: bool = typer.Option(False, "--json", help="Also print tracks.json on stdout."),
    min_volume: float = typer.Option(
        0.01, "--min-volume", metavar="ML", min=0.0,
        help="Smallest connected component counted as a lesion (mL)."),
    lesion_info: Path | None = typer.Option(
        None, "--lesion-info", metavar="CSV",
        help="Organ and nodal status per lesion (docs/track.md); default: none, non-nodal."),
    shard: str | None = typer.Option(
        None, "--shard", metavar="K/N",
        help="Track only part K of N of the cache's patients (give each shard its own OUT)."),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Preprocessing workers when PATH is raw input."),
    tracker: Path | None = typer.Option(
        None, "--tracker", metavar="TRACKRUN",
        help="A tracker from medseq train-tracker, or 'bundled': segments every timepoint "
             "without a mask (given masks always win)."),
    annotations: Path | None = typer.Option(
        None, "--annotations", metavar="CSV",
        help="With --tracker: baseline lesions as points or RECIST lines (docs/track.md), for "
             "patients without a baseline mask."),
    device: str = typer.Option("cpu", "--device", help="With --tracker: cpu or cuda."),
) -> None:
    """Measure and match lesions over time; RECIST 1.1 and volumetric response per follow-up.

    Lesions are 26-connected components of each timepoint's mask, measured on the source grid,
    matched across timepoints in the registered frame. Patients without masks are listed as not
    tracked. Outputs are described in docs/track.md.

    Example: medseq track cache/ -o tracking/ --json | jq '.patients[].best_overall_response'
    """
    from medseq.console import emit_json, stderr
    from medseq.tracking.pipeline import track_cache, tracks_document, write_outputs

    shard_pair = parse_shard(shard)
    if output.exists() and not output.is_dir():
        raise UsageError("the output must be a folder, and this is a file", path=output)
    if lesion_info is not None and not lesion_info.is_file():
        raise UsageError("--lesion-info file not found", path=lesion_info)
    if (path / MANIFEST_NAME).is_file():
        cache = path
    else:
        cache = _preprocess_raw(path, output / "cache", workers=workers, shard=shard_pair)
        shard_pair = None  # the cache holds just this shard's patients already
    if annotations is not None and tracker is None:
        raise UsageError("--annotations needs --tracker TRACKRUN")
    provenance = None
    if tracker is not None:  # the learned tracker: masks first, then the unchanged pipeline
        from medseq.tracker.integrate import fill_before_tracking

        cache, provenance = fill_before_tracking(cache, tracker, output,
                                                 annotations=annotations, device=device)
    results = track_cache(cache, min_volume_ml=min_volume, lesion_info=lesion_info,
                          shard=shard_pair)
    if provenance is not None:
        from medseq.tracker.integrate import after_tracking

        results = after_tracking(results, provenance)
    settings: dict[str, Any] = {"cache": str(cache), "min_volume_ml": min_volume,
                                "lesion_info": str(lesion_info) if lesion_info else None,
                                "shard": shard}
    if tracker is not None:
        settings.update(tracker=str(tracker),
                        annotations=str(annotations) if annotations else None)
    write_outputs(results, output, settings=settings)
    if provenance is not None:
        from medseq.tracker.integrate import annotate_outputs

        annotate_outputs(output, results, provenance)
    for result in results:
        if result.note:
            stderr.print(f"{result.patient_id}: {result.note}", markup=False)
    tracked = [r for r in results if r.tracked]
    counts: dict[str, int] = {}
    for result in tracked:
        key = result.best_overall_response.value
        counts[key] = counts.get(key, 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    stderr.print(f"tracked {len(tracked)} of {len(results)} patient(s); best overall response: "
                 f"{summary}; wrote {output}/lesions.csv, response.csv, tracks.json",
                 markup=False)
    if json_output:
        if provenance is not None:  # the written file carries the source columns
            import json

            emit_json(json.loads((output / "tracks.json").read_text(encoding="utf-8")))
        else:
            emit_json(tracks_document(results, settings=settings))


def _preprocess_raw(path: Path, cache: Path, *, workers: int,
                    shard: tuple[int, int] | None) -> Path:
    """Preprocess raw input with default settings into ``cache`` (reruns reuse it)."""
    from medseq.console import stderr
    from medseq.io.discover import discover
    from medseq.preprocess.config import PreprocessConfig
    from medseq.preprocess.runner import run_preprocess

    if not path.exists():
        raise InputDataError("no such file or folder", path=path)
    stderr.print(f"{path} is not a cache: preprocessing it into {cache} first", markup=False)
    cohort = discover(path)
    summary = run_preprocess(cohort, cache, config=PreprocessConfig(), workers=workers,
                             shard=shard)
    for failure in summary.failed:
        stderr.print(f"preprocessing failed for {failure.patient_id}: {failure.error}",
                     markup=False)
    return cache
