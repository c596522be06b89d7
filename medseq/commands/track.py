"""``medseq track``: lesion tracking and RECIST 1.1 response from a cache (or raw input)."""

from __future__ import annotations

from pathlib import Path

import typer

from medseq.commands._common import parse_shard, reports_errors
from medseq.errors import InputDataError, UsageError

MANIFEST_NAME = "manifest.json"


@reports_errors
def command(
    path: Path | None = typer.Argument(
        None, metavar="PATH",
        help="A cache from medseq preprocess, or raw input (DICOM tree, NIfTI layout, manifest "
             "CSV), which is preprocessed first into OUT/cache."),
    output: Path | None = typer.Option(
        None, "-o", "--output", metavar="OUT",
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
        help="Track only part K of N of the cache's patients (`auto`: the SLURM array task) "
             "into OUT/.shards/; then run --merge OUT."),
    merge: Path | None = typer.Option(
        None, "--merge", metavar="OUT",
        help="Join the shards in OUT into lesions.csv, response.csv and tracks.json."),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Preprocessing workers when PATH is raw input."),
    roi: str | None = typer.Option(
        None, "--roi", metavar="REGEX",
        help="Masks from DICOM SEG/RTSTRUCT when PATH is raw input: the segments/ROIs whose "
             "label matches (case-insensitive) are lesions; default all."),
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
    from medseq.contracts.tracks import TrackingSettings
    from medseq.io.writer_lock import writer_lock
    from medseq.tracking.outputs import tracks_document, write_outputs
    from medseq.tracking.pipeline import track_cache
    from medseq.tracking.stored import input_hash, store_tracks

    if merge is not None:
        if path is not None or output is not None or shard is not None:
            raise UsageError("--merge OUT takes no PATH, -o or --shard")
        _merge(merge, json_output=json_output)
        return
    if path is None or output is None:
        raise UsageError("give PATH and -o OUT (or --merge OUT)")
    shard_pair = parse_shard(shard)
    if annotations is not None and tracker is None:
        raise UsageError("--annotations needs --tracker TRACKRUN")
    if tracker is not None and shard_pair is not None:
        raise UsageError("--tracker does not work with --shard; track the whole cache")
    if roi is not None:
        from medseq.dicom_objects.labels import compile_roi_pattern

        compile_roi_pattern(roi)  # a bad expression fails before anything is written
    if output.exists() and not output.is_dir():
        raise UsageError("the output must be a folder, and this is a file", path=output)
    if lesion_info is not None and not lesion_info.is_file():
        raise UsageError("--lesion-info file not found", path=lesion_info)
    # One track per OUT at a time; shards of one OUT side by side (each its own file).
    with writer_lock(output, shard=shard_pair, what="output folder"):
        raw_input = None  # where the source images are, for export-dicom
        only = None
        if (path / MANIFEST_NAME).is_file() or (path / ".shards").is_dir():
            cache = path
            _check_cache_roi(cache, roi)
        else:
            raw_input = str(path.resolve())
            cache = _preprocess_raw(path, output / "cache", workers=workers, shard=shard_pair,
                                    roi=roi)
            only = _shard_patients(cache, shard_pair)
        provenance = None
        if tracker is not None:  # the learned tracker: masks first, then the unchanged pipeline
            from medseq.tracker.integrate import fill_before_tracking

            cache, provenance = fill_before_tracking(cache, tracker, output,
                                                     annotations=annotations, device=device)
        # A cache still being made by preprocess shards has no manifest.json to hash yet.
        computed_from = (input_hash(cache, min_volume_ml=min_volume, lesion_info=lesion_info)
                         if (cache / MANIFEST_NAME).is_file() else None)
        results = track_cache(cache, min_volume_ml=min_volume, lesion_info=lesion_info,
                              shard=None if only is not None else shard_pair, patients=only)
        settings = TrackingSettings(
            cache=str(cache), min_volume_ml=min_volume,
            lesion_info=str(lesion_info) if lesion_info else None,
            shard=f"{shard_pair[0]}/{shard_pair[1]}" if shard_pair else None, input=raw_input)
        if provenance is not None:
            from medseq.tracker.integrate import after_tracking

            results = after_tracking(results, provenance)
            settings.tracker = str(tracker)
            settings.annotations = str(annotations) if annotations else None
        document = tracks_document(results, settings=settings, input_hash=computed_from)
        if shard_pair is None:
            write_outputs(document, output)
        else:
            from medseq.tracking.shards import write_shard

            written = write_shard(output, shard_pair, document)
    if shard_pair is None:
        store_tracks(cache, document)  # kept for train / report (default settings)
    for result in results:
        if result.note:
            stderr.print(f"{result.patient_id}: {result.note}", markup=False)
    tracked = [r for r in results if r.tracked]
    counts: dict[str, int] = {}
    for result in tracked:
        key = result.best_overall_response.value
        counts[key] = counts.get(key, 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    wrote = (f"{output}/lesions.csv, response.csv, tracks.json" if shard_pair is None
             else f"{written}; after every shard: medseq track --merge {output}")
    stderr.print(f"tracked {len(tracked)} of {len(results)} patient(s); best overall response: "
                 f"{summary}; wrote {wrote}", markup=False)
    if json_output:
        emit_json(document.model_dump(mode="json"))


def _merge(out: Path, *, json_output: bool) -> None:
    """``track --merge OUT``: the shards' tracking into OUT's three files (idempotent)."""
    from medseq.console import emit_json, stderr
    from medseq.tracking.outputs import write_outputs
    from medseq.tracking.shards import merge_tracks

    document = merge_tracks(out)
    write_outputs(document, out)
    stderr.print(f"merged {len(document.patients)} patient(s); wrote {out}/lesions.csv, "
                 "response.csv, tracks.json", markup=False)
    if json_output:
        emit_json(document.model_dump(mode="json"))


def _shard_patients(cache: Path, shard: tuple[int, int] | None) -> list[str] | None:
    """The cache ids a preprocess shard of ``cache`` took (None without a shard)."""
    if shard is None:
        return None
    from medseq.contracts.cache import read_shard_records

    plans = [p for p in read_shard_records(cache) if tuple(p.shard) == shard]
    return plans[0].patients if plans else []


def _check_cache_roi(cache: Path, roi: str | None) -> None:
    """``--roi`` with a cache: only the selection the cache was made with can be honoured."""
    if roi is None:
        return
    from medseq.contracts.cache import read_manifest

    made = read_manifest(cache).config.get("roi")
    if made != roi:
        raise UsageError(f"--roi {roi!r}: this cache's masks were selected with "
                         f"{'--roi ' + repr(made) if made else 'no --roi (all)'}; --roi "
                         "applies when PATH is raw input, or preprocess again with it",
                         path=cache)


def _preprocess_raw(path: Path, cache: Path, *, workers: int,
                    shard: tuple[int, int] | None, roi: str | None = None) -> Path:
    """Preprocess raw input with default settings (and ``--roi``) into ``cache`` (reruns
    reuse it)."""
    from medseq.console import stderr
    from medseq.io.discover import discover
    from medseq.preprocess.config import PreprocessConfig, with_roi
    from medseq.preprocess.runner import run_preprocess

    if not path.exists():
        raise InputDataError("no such file or folder", path=path)
    stderr.print(f"{path} is not a cache: preprocessing it into {cache} first", markup=False)
    cohort = discover(path)
    summary = run_preprocess(cohort, cache, config=with_roi(PreprocessConfig(), roi),
                             workers=workers, shard=shard)
    for failure in summary.failed:
        stderr.print(f"preprocessing failed for {failure.patient_id}: {failure.error}",
                     markup=False)
    return cache
