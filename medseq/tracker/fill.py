"""Masks for the timepoints that have none, so the existing ``track`` pipeline measures them.

:func:`fill_cache` writes a *derived cache* (``manifest.json`` + the tracker's masks) whose
records point at the original cache's files (relative paths; nothing of the original is
modified). For every ok patient whose baseline has a mask (or, without one, baseline
annotations), each timepoint without a mask gets an integer label map written by the tracker:
value n for the n-th baseline lesion (in the baseline mask's component order), higher values for
new lesions from the detector. A user's mask always wins: timepoints with one are left as they
are. A follow-up is segmented on its own grid when the cache keeps its source image
(``image_native``, :mod:`medseq.tracker.views`): the label map is its source mask there
(``mask_native``), and its nearest-neighbour carriage onto the registered grid the registered
mask, exactly as ``preprocess`` stores a given mask. In an older cache without the source
image the label map lies on the registered grid, placed in the follow-up's own scanner frame
(affine = M^-1 @ grid affine, M = ``transform_to_baseline``). Either way the pipeline's
measurements, centroids and matching see them like a source mask. :class:`Provenance` says for each
written label where it came from and how confident the network was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medseq.contracts.cache import (
    CacheManifest,
    PatientRecord,
    TimepointRecord,
    read_manifest,
    write_manifest,
)
from medseq.errors import InputDataError
from medseq.tracker.annotations import Prompt
from medseq.tracker.views import SPACING_TOLERANCE

if TYPE_CHECKING:
    from medseq.tracker.views import View

SOURCE_MASK, SOURCE_TRACKER, SOURCE_DETECTOR = "mask", "tracker", "detector"
SPACING_KEYS = frozenset({"target_spacing"})
"""Preprocessing settings compared as the grid's spacing, not as values."""


@dataclass(frozen=True)
class LesionSource:
    """Where one lesion of a filled timepoint came from."""

    patient_id: str
    timepoint: int
    value: int
    """The label value written (0 for a baseline lesion that was not found or vanished)."""
    source: str
    confidence: float
    status: str
    """``found``, ``vanished``, ``not_found`` (tracker) or ``new`` (detector)."""
    baseline_centroid_mm: tuple[float, float, float] | None = None
    """For tracker lesions: the baseline lesion's centroid (registered frame)."""


@dataclass
class Provenance:
    """What :func:`fill_cache` wrote: per patient, filled timepoints and their lesions."""

    filled: dict[str, set[int]] = field(default_factory=dict)
    lesions: list[LesionSource] = field(default_factory=list)


MaskProducer = Callable[..., tuple[np.ndarray, list[LesionSource]]]


def relocate(record: PatientRecord, source: Path, target: Path) -> PatientRecord:
    """A copy of ``record`` whose file paths, relative to ``target``, name ``source``'s files."""
    def move(rel: str | None) -> str | None:
        if rel is None:
            return None
        return os.path.relpath(Path(source).resolve() / rel, Path(target).resolve())

    timepoints = [tp.model_copy(update={"image": move(tp.image), "mask": move(tp.mask),
                                        "mask_native": move(tp.mask_native),
                                        "image_native": move(tp.image_native)})
                  for tp in record.timepoints]
    return record.model_copy(update={"timepoints": timepoints,
                                     "crops": move(record.crops)})


def fill_cache(cache_dir: Path, tracker_dir: Path, out_dir: Path, *,
               annotations: dict[str, list[Prompt]] | None = None, device: str = "cpu",
               detect: bool = True) -> Provenance:
    """Write the derived cache into ``out_dir``; return what was written (see module doc).

    Raises:
        InputDataError: the tracker was trained on a cache with other preprocessing settings.
    """
    from medseq.tracker.segment import Tracker

    cache_dir, out_dir = Path(cache_dir), Path(out_dir)
    manifest = read_manifest(cache_dir)
    tracker = Tracker.load(tracker_dir, device=device)
    check_compatible(tracker, manifest, tracker_dir)
    provenance = Provenance()
    records: dict[str, PatientRecord] = {}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Built beside its final place and renamed at the end: an error leaves nothing behind.
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        for pid, record in sorted(manifest.patients.items()):
            moved = relocate(record, cache_dir, out_dir)
            if record.status == "ok":
                moved = _fill_patient(tracker, cache_dir, work, record, moved,
                                      (annotations or {}).get(pid, []), provenance,
                                      detect=detect)
            records[pid] = moved
        write_manifest(work, manifest.model_copy(update={"patients": records}))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(work, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return provenance


def check_compatible(tracker: object, manifest: CacheManifest, tracker_dir: Path) -> None:
    """The cache must come from the preprocessing settings the tracker was trained on."""
    card = tracker.card  # type: ignore[attr-defined]
    # The grid's spacing is compared below, as spacing: ``predict`` resamples a study onto the
    # training cohort's grid (``target_spacing`` set to it), which a tracker trained on a cache
    # of that cohort (``target_spacing: null``, the same spacing) fits.
    changed = sorted(k for k in set(card.preprocess_config) | set(manifest.config)
                     if k not in SPACING_KEYS
                     and card.preprocess_config.get(k) != manifest.config.get(k))
    if card.preprocess_config and changed:
        raise InputDataError(f"this tracker was trained on a cache with other preprocessing "
                             f"settings ({', '.join(changed)}); preprocess with the same "
                             "settings or train a tracker on this cache", path=tracker_dir)
    spacing = manifest.config.get("target_spacing") or manifest.fingerprint.get("target_spacing")
    if card.spacing_mm and spacing:
        ratio = np.asarray(spacing, dtype=float) / np.asarray(card.spacing_mm, dtype=float)
        if np.any(np.abs(ratio - 1) > SPACING_TOLERANCE):
            raise InputDataError(f"this tracker was trained at {card.spacing_mm} mm voxels and "
                                 f"the cache holds {spacing} mm: train a tracker on this cache",
                                 path=tracker_dir)


def _fill_patient(tracker: object, cache_dir: Path, out_dir: Path, record: PatientRecord,
                  moved: PatientRecord, prompts: Sequence[Prompt], provenance: Provenance, *,
                  detect: bool) -> PatientRecord:
    from scipy import ndimage

    from medseq.io.nifti import load_nifti
    from medseq.tracker.pairs import normaliser
    from medseq.tracker.prompt import mm_to_voxel
    from medseq.tracker.segment import FOUND, segment_prompt
    from medseq.tracker.views import load_view

    timepoints = sorted(record.timepoints, key=lambda tp: tp.index)
    base = timepoints[0]
    config = normaliser(read_manifest(cache_dir).config)
    baseline = load_view(cache_dir, record, 0, config, native=False)
    base_image, affine = baseline.image, baseline.affine  # the registered (baseline) grid
    spacing = baseline.spacing
    if base.mask:
        mask = load_nifti(cache_dir / base.mask).array > 0
        components, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
        lesions = [components == i for i in range(1, count + 1)]
    elif prompts:
        lesions = []
        sources = []
        for n, prompt in enumerate(prompts, start=1):
            point = mm_to_voxel(prompt.point_mm, affine)
            line = (None if prompt.line_mm is None
                    else np.stack([mm_to_voxel(p, affine) for p in prompt.line_mm]))
            outcome = segment_prompt(tracker, base_image.astype(np.float32), point,  # type: ignore[arg-type]
                                     spacing, line)
            if outcome.status != FOUND or outcome.mask is None:
                raise InputDataError(f"annotation line {prompt.line}: the tracker finds no "
                                     f"lesion at lesion {prompt.lesion!r} of patient "
                                     f"{record.patient_id}; draw a mask or move the point")
            lesions.append(outcome.mask)
            sources.append(LesionSource(record.patient_id, base.index, n, SOURCE_TRACKER,
                                        outcome.confidence, FOUND))
        labels = np.zeros(base_image.shape, dtype=np.uint8)
        for n, lesion in enumerate(lesions, start=1):
            labels[lesion & (labels == 0)] = n
        moved = write_label_map(out_dir, moved, 0, labels, affine, base)
        provenance.filled.setdefault(record.patient_id, set()).add(base.index)
        provenance.lesions += sources
    else:
        return moved
    grid_shape = base_image.shape
    ct = _all_ct(record)
    if tracker.config.detector == "subtraction" and not ct:  # type: ignore[attr-defined]
        detect = False  # its rules are in HU
    for position, tp in enumerate(timepoints[1:], start=1):
        if tp.mask or tp.mask_native:
            continue
        view = load_view(cache_dir, record, position, config)
        labels, sources = follow_up_labels(tracker, record.patient_id, tp.index,
                                           view.image.astype(np.float32), view.body,
                                           base_image.astype(np.float32), lesions, view.spacing,
                                           affine, detect=detect, to_view=view.to_view,
                                           ct=ct)
        moved = write_label_map(out_dir, moved, position, labels, affine, tp,
                                view=view if view.native else None, grid_shape=grid_shape)
        provenance.filled.setdefault(record.patient_id, set()).add(tp.index)
        provenance.lesions += sources
    return moved.model_copy(update={"has_mask": True})


def _all_ct(record: PatientRecord) -> bool:
    return all((tp.intensity or {}).get("kind", "ct_window") == "ct_window"
               for tp in record.timepoints)


def follow_up_labels(tracker: object, patient_id: str, timepoint: int, image: np.ndarray,
                     body: np.ndarray, base_image: np.ndarray, lesions: Sequence[np.ndarray],
                     spacing: np.ndarray, affine: np.ndarray, *, detect: bool = True,
                     to_view: np.ndarray | None = None, ct: bool = True
                     ) -> tuple[np.ndarray, list[LesionSource]]:
    """The tracker's label map of one follow-up and where each label came from.

    ``image``, ``body`` and ``spacing`` are the follow-up's own grid, reached from the
    registered grid (``base_image``, ``lesions``, ``affine``) by ``to_view`` (None: the
    registered grid itself); the label map is on the follow-up's grid. On CT (``ct``) a
    lesion drawn on nothing denser than aerated lung is vanished (:func:`empty_in_image`).
    """
    from medseq.tracker.detect import detect_by_subtraction, detect_new
    from medseq.tracker.intensity import cache_value
    from medseq.tracker.segment import EMPTY_HU, FOUND, empty_in_image, track_lesions
    from medseq.tracker.views import warp_labels

    outcomes = track_lesions(tracker, image, base_image, lesions, spacing,  # type: ignore[arg-type]
                             to_view)
    if ct:
        empty_below = cache_value(tracker.card.preprocess_config, EMPTY_HU)  # type: ignore[attr-defined]
        outcomes = [empty_in_image(o, image, empty_below) for o in outcomes]
    labels = np.zeros(image.shape, dtype=np.uint8)
    sources = []
    for n, (lesion, outcome) in enumerate(zip(lesions, outcomes, strict=True), start=1):
        centre = affine[:3, :3] @ np.argwhere(lesion).mean(axis=0) + affine[:3, 3]
        where = (float(centre[0]), float(centre[1]), float(centre[2]))
        if outcome.status == FOUND and outcome.mask is not None:
            labels[outcome.mask & (labels == 0)] = n
        sources.append(LesionSource(patient_id, timepoint, n if outcome.status == FOUND else 0,
                                    SOURCE_TRACKER, round(outcome.confidence, 4),
                                    outcome.status, where))
    threshold = tracker.card.detect_threshold  # type: ignore[attr-defined]
    if detect and threshold is not None:
        tracked = [o.mask for o in outcomes if o.mask is not None]
        carried = (lesions if to_view is None
                   else [warp_labels(m, to_view, image.shape) for m in lesions])
        if tracker.config.detector == "subtraction":  # type: ignore[attr-defined]
            candidates = detect_by_subtraction(
                image, body, spacing, tracked=tracked, baseline=carried,
                baseline_image=base_image, to_view=to_view, min_score=threshold,
                preprocess_config=tracker.card.preprocess_config,  # type: ignore[attr-defined]
                min_voxels=tracker.config.min_new_voxels)  # type: ignore[attr-defined]
        else:
            candidates = detect_new(tracker, image, body, spacing, tracked=tracked,  # type: ignore[arg-type]
                                    baseline=carried, min_score=threshold,
                                    baseline_image=base_image, to_view=to_view)
        value = len(lesions)
        for candidate in sorted(candidates, key=lambda c: -c.score):
            value += 1
            if value > 255:
                break
            labels[candidate.mask & (labels == 0)] = value
            sources.append(LesionSource(patient_id, timepoint, value, SOURCE_DETECTOR,
                                        round(candidate.score, 4), "new"))
    return labels, sources


def write_label_map(out_dir: Path, moved: PatientRecord, position: int, labels: np.ndarray,
                    grid_affine: np.ndarray, tp: TimepointRecord, *, view: View | None = None,
                    grid_shape: Sequence[int] | None = None) -> PatientRecord:
    """Save a label map for timepoint ``position`` and point its record at it.

    ``view`` None: ``labels`` lie on the registered grid (``grid_affine``) and serve as both
    masks. Else they lie on the timepoint's own grid: saved as its source mask, and carried onto
    the registered grid (``grid_shape``, nearest neighbour, as ``preprocess`` carries a given
    mask) for the registered mask.
    """
    from medseq.io.nifti import save_nifti
    from medseq.io.volume import Volume
    from medseq.tracker.views import labels_to_registered

    name = f"{moved.patient_id}/t{tp.index:02d}_tracker_mask"
    rel, rel_native = f"{name}.nii.gz", f"{name}_native.nii.gz"
    (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    if view is None:
        matrix = np.asarray(tp.transform_to_baseline, dtype=np.float64)
        scanner = np.linalg.inv(matrix) @ grid_affine
        save_nifti(Volume(labels, scanner), out_dir / rel)
        rel_native, native_affine, voxel = rel, scanner, grid_affine
    else:
        assert grid_shape is not None
        save_nifti(Volume(labels, view.affine), out_dir / rel_native)
        registered = labels_to_registered(labels, view.to_view, grid_shape)
        save_nifti(Volume(registered, grid_affine), out_dir / rel)
        native_affine = voxel = view.affine
    timepoints = list(moved.timepoints)
    timepoints[position] = timepoints[position].model_copy(update={
        "mask": rel, "mask_native": rel_native, "native_affine": native_affine.tolist(),
        "native_shape": list(labels.shape),
        "lesion_volume_ml": float((labels > 0).sum() * abs(np.linalg.det(voxel[:3, :3]))
                                  / 1000.0)})
    return moved.model_copy(update={"timepoints": timepoints})


def hide_follow_up_masks(cache_dir: Path, out_dir: Path) -> Path:
    """A derived cache with every follow-up's mask removed (for benchmarks and tests)."""
    manifest = read_manifest(cache_dir)
    records = {}
    for pid, record in manifest.patients.items():
        moved = relocate(record, cache_dir, out_dir)
        timepoints = [tp if tp.index == min(t.index for t in moved.timepoints)
                      else tp.model_copy(update={"mask": None, "mask_native": None,
                                                 "lesion_volume_ml": None})
                      for tp in moved.timepoints]
        records[pid] = moved.model_copy(update={"timepoints": timepoints})
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_manifest(out_dir, manifest.model_copy(update={"patients": records}))
    return Path(out_dir)
