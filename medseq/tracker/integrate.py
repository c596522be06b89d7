"""The seam between the tracker and ``medseq track``: before and after the existing pipeline.

``track --tracker TRACKRUN`` calls :func:`fill_before_tracking` (masks for every timepoint
without one, into ``OUT/tracker_cache``), runs the unchanged pipeline on that cache, then
:func:`after_tracking` (not-found lesions, and every lesion row's typed ``source`` and
``confidence``) before the document is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medseq.contracts.tracks import PatientTracking
from medseq.errors import UsageError
from medseq.tracker.fill import Provenance

DERIVED_CACHE = "tracker_cache"
BUNDLED = "bundled"
"""``--tracker bundled``: the tracker shipped in ``medseq/data/tracker`` (docs/track.md)."""


def resolve_tracker(tracker: Path) -> Path:
    """The tracker folder: ``bundled`` names the shipped one; others must exist."""
    if str(tracker) == BUNDLED:
        from importlib.resources import files

        return Path(str(files("medseq") / "data" / "tracker"))
    if not Path(tracker).is_dir():
        raise UsageError("--tracker folder not found", path=tracker)
    return Path(tracker)


def fill_before_tracking(cache: Path, tracker: Path, output: Path, *,
                         annotations: Path | None = None, device: str = "cpu"
                         ) -> tuple[Path, Provenance]:
    """Write ``output/tracker_cache`` and return it with what the tracker wrote."""
    from medseq.tracker.annotations import read_annotations, resolve_annotations
    from medseq.tracker.fill import fill_cache

    tracker = resolve_tracker(tracker)
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
    """Lesions the tracker could not find are reported as ``not_found``, not 0 mm; every
    lesion row gets its ``source`` and ``confidence``."""
    from medseq.tracker.provenance import apply_not_found, apply_sources

    return apply_sources(apply_not_found(results, provenance), provenance)


def fill_for_predict(cache: Path, tracker: Path, *, device: str = "cpu"
                     ) -> tuple[Path, Provenance]:
    """``predict``: fill a one-patient cache and re-cut its crops' mask channel.

    The response model reads lesion crops (image + mask) at the baseline targets; a follow-up
    without a mask has an empty mask channel, so the channel is sampled again (nearest
    neighbour) from the tracker's label map for every filled timepoint.
    """
    import numpy as np

    from medseq.contracts.cache import read_manifest, write_manifest
    from medseq.preprocess.orient import cube_grid
    from medseq.tracker.fill import fill_cache

    tracker = resolve_tracker(tracker)
    derived = Path(cache) / DERIVED_CACHE
    provenance = fill_cache(cache, tracker, derived, device=device)
    manifest = read_manifest(derived)
    size = int(manifest.config.get("crop_size", 32))
    spacing = float(manifest.config.get("crop_spacing", 2.0))
    for pid, filled in provenance.filled.items():
        record = manifest.patients[pid]
        if not record.crops or not record.targets or record.grid_affine is None:
            continue
        crops = np.load(derived / record.crops, allow_pickle=False)
        to_index = np.linalg.inv(np.asarray(record.grid_affine, dtype=np.float64))
        for position, tp in enumerate(sorted(record.timepoints, key=lambda t: t.index)):
            if tp.index not in filled or tp.mask is None:
                continue
            from medseq.io.nifti import load_nifti

            labels = load_nifti(derived / tp.mask).array
            for target in record.targets:
                grid = cube_grid(target.centroid_mm, size=size, spacing=spacing)
                index = np.stack(np.meshgrid(*(np.arange(size),) * 3, indexing="ij"), -1)
                world = index @ grid.affine[:3, :3].T + grid.affine[:3, 3]
                voxel = np.rint(world @ to_index[:3, :3].T + to_index[:3, 3]).astype(int)
                inside = np.all((voxel >= 0) & (voxel < labels.shape), axis=-1)
                channel = np.zeros((size,) * 3, dtype=bool)
                hit = voxel[inside]
                channel[inside] = labels[hit[:, 0], hit[:, 1], hit[:, 2]] > 0
                crops[position, target.index, 1] = channel
        rel = f"{pid}/crops_tracker.npy"
        np.save(derived / rel, crops, allow_pickle=False)
        manifest.patients[pid] = record.model_copy(update={"crops": rel})
    write_manifest(derived, manifest)
    return derived, provenance
