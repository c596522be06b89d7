"""The seam between the tracker and ``medseq track``: before and after the existing pipeline.

``track --tracker TRACKRUN`` calls :func:`fill_before_tracking` (masks for every timepoint
without one, into ``OUT/tracker_cache``), runs the unchanged pipeline on that cache, then
:func:`after_tracking` (not-found lesions, ``source``/``confidence`` columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medseq.errors import UsageError
from medseq.tracker.fill import Provenance
from medseq.tracking.pipeline import PatientTracking

DERIVED_CACHE = "tracker_cache"


def fill_before_tracking(cache: Path, tracker: Path, output: Path, *,
                         annotations: Path | None = None, device: str = "cpu"
                         ) -> tuple[Path, Provenance]:
    """Write ``output/tracker_cache`` and return it with what the tracker wrote."""
    from medseq.tracker.annotations import read_annotations, resolve_annotations
    from medseq.tracker.fill import fill_cache

    if not Path(tracker).is_dir():
        raise UsageError("--tracker folder not found", path=tracker)
    prompts = None
    if annotations is not None:
        if not Path(annotations).is_file():
            raise UsageError("--annotations file not found", path=annotations)
        prompts = resolve_annotations(annotations, read_annotations(annotations), cache)
    derived = Path(output) / DERIVED_CACHE
    provenance = fill_cache(cache, tracker, derived, annotations=prompts, device=device)
    return derived, provenance


def after_tracking(results: Sequence[PatientTracking], provenance: Provenance
                   ) -> list[PatientTracking]:
    """Lesions the tracker could not find are reported as ``not_found``, not 0 mm."""
    from medseq.tracker.provenance import apply_not_found

    return apply_not_found(results, provenance)


def annotate_outputs(output: Path, results: Sequence[PatientTracking],
                     provenance: Provenance | None) -> None:
    """``source`` and ``confidence`` columns in ``lesions.csv`` and ``tracks.json``."""
    if provenance is None:
        return
    from medseq.tracker.provenance import add_source_columns

    add_source_columns(output, results, provenance)
