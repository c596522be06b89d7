"""Benchmark: the learned follow-up tracker against registration only (unscaled and scaled) and a
region grower.

Generates two disjoint ``small`` synthetic cohorts (train: seed 1, test: seed 2; NIfTI),
preprocesses both, trains a tracker on the first (``train_tracker``, timed), hides every
follow-up mask of the test cohort (kept only as truth) and lets four methods produce them:

- ``tracker``: :func:`medseq.tracker.fill.fill_cache` (propagated prompt + network, and the
  detector for new lesions);
- ``registration``: the baseline lesion mask carried by the rigid registration (nearest
  neighbour) onto the follow-up;
- ``scaled``: registration followed by the local scale registration of
  :mod:`medseq.tracker.refine` (the carried mask scaled about the propagated point and moved by
  up to a voxel per axis), no network;
- ``grower``: a classical region grower seeded at the propagated centroid, inside the carried
  lesion grown by 3 voxels, accepting voxels within 2.5 SD of the baseline lesion's intensity.

Every method's follow-up masks, and the truth, are compared on each follow-up's own grid (the
source image's, where the true masks were drawn; the registered grid for a cache that does not
keep the source images). Per follow-up lesion present in the truth (the follow-up components
linked to a baseline lesion): found (centroid within 10 mm and Dice > 0.1), Dice (also by the
true lesion's size in voxels), absolute volume error, longest-diameter error (RECIST sum over
fragments), and the slope of the predicted on the true log change of the longest diameter
(baseline to follow-up; 1: change measured in full, 0: the baseline size copied) for lung
lesions and for the rest (the baseline lesion's 2-voxel shell below -150 HU on average: lung).
Per follow-up: the RECIST category from ``medseq track`` on the produced masks equals the category
from the true masks. New lesions (tracker only): sensitivity and false positives per scan,
how visible the true ones are (contrast to their surroundings over the surroundings' SD), and
the subtraction detector's sensitivity and false positives at the thresholds that the training
cohort gives for 0.02, 0.1 and 0.5 false positives per follow-up (``subtraction_froc``).
Diagnostics of the RECIST gap (``recist_ceilings``): the agreement of the tracker's masks with
the truth's vanished lesions cleared, with the true new lesions added, and both; of the
true masks moved by up to half a voxel (the noise floor of any method on this grid); and of
the baseline masks scaled by the true diameter ratios, exactly and with a 10% error (what
drawing the baseline's shape at the right size reaches).
Everything is reused from ``--work`` when present, so reruns only redo what is missing.

Usage:
    nice -n 10 python benchmarks/tracking.py --work /tmp/bench-tracking [--train-patients 60]
        [--test-patients 60] [--steps 600] [--device cpu] [--config tracker.yaml]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cohort_key import pin_key  # benchmarks/, first on sys.path when run as a script
from machine import cpu_kernels

from medseq.config import load_config
from medseq.contracts.cache import read_manifest, write_manifest
from medseq.data.synthetic import generate_cohort
from medseq.io.discover import discover
from medseq.preprocess.config import PreprocessConfig
from medseq.preprocess.runner import run_preprocess
from medseq.tracker.config import TrackerConfig
from medseq.tracker.fill import (
    SOURCE_TRACKER,
    Provenance,
    fill_cache,
    hide_follow_up_masks,
    relocate,
    write_label_map,
)
from medseq.tracker.intensity import cache_value, units_per_hu
from medseq.tracker.pairs import PatientData, load_patient, normaliser, surrounding_tissue
from medseq.tracker.provenance import apply_not_found
from medseq.tracker.refine import FitLevels, ScaleFit
from medseq.tracker.segment import NOT_FOUND, VANISHED
from medseq.tracker.train import dice, train_tracker
from medseq.tracking.lesions import find_lesions
from medseq.tracking.pipeline import track_cache

METHODS = ("tracker", "registration", "scaled", "grower")
SIZE_BINS = ((0, 10), (10, 30), (30, 100), (100, 0))
"""True lesion sizes (voxels) the median Dice is also broken down by."""
SCALE_JITTER = 0.1
"""SD of the log-normal error given to the true diameter ratios (``true_scale_jitter``)."""
LUNG_SHELL_HU = -150.0
"""A baseline lesion whose surrounding shell averages below this is a lung lesion."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/medseq-bench-tracking"))
    parser.add_argument("--train-patients", type=int, default=60)
    parser.add_argument("--test-patients", type=int, default=60)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML tracker settings (as train-tracker --config); --steps wins")
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    train_cache = _cohort(work, "train", args.train_patients, seed=1)
    test_cache = _cohort(work, "test", args.test_patients, seed=2)
    suffix = f"_{args.config.stem}" if args.config else ""
    run = work / f"tracker_{args.steps}{suffix}"
    seconds = None
    if not (run / "tracker.json").is_file():
        started = time.perf_counter()
        config = load_config(TrackerConfig, args.config,
                             {"steps": args.steps, "device": args.device})
        train_tracker(train_cache, run, config,
                      resume=(run / "tracker_config.json").is_file(), log=print)
        seconds = time.perf_counter() - started
    hidden = hide_follow_up_masks(test_cache, work / "hidden")
    started = time.perf_counter()
    provenance = fill_cache(hidden, run, work / "filled_tracker", device=args.device)
    infer_seconds = time.perf_counter() - started
    manifest = read_manifest(test_cache)
    preprocess = normaliser(manifest.config)
    truth = {r.patient_id: d for r in manifest.ok_patients()
             if (d := load_patient(test_cache, r, preprocess)) is not None}
    card = json.loads((run / "tracker.json").read_text())["config"]
    _write_baselines(hidden, work, truth, float(card.get("scale_prior_sd", 0.0)))
    lung_below = cache_value(manifest.config, LUNG_SHELL_HU)
    lesion_rows = {m: _lesion_metrics(work / f"filled_{m}", truth, lung_below) for m in METHODS}
    truth_tracking = {r.patient_id: r for r in track_cache(test_cache)}
    recist = {}
    for method in METHODS:
        results = track_cache(work / f"filled_{method}")
        if method == "tracker":
            results = apply_not_found(results, provenance)
        recist[method] = _recist_agreement(results, truth_tracking)
    new = _new_lesions(work / "filled_tracker", truth)
    new["visibility"] = _new_lesion_visibility(truth, manifest.config, lung_below)
    new["subtraction_froc"] = _subtraction_froc(train_cache, work / "filled_tracker", truth,
                                                manifest.config)
    ceilings = _ceilings(hidden, work, truth, provenance, truth_tracking)
    scans = sum(len(d.timepoints) - 1 for d in truth.values())
    patches = args.steps * int(card["batch_size"]) * (2 if card.get("detector") == "separate"
                                                       else 1)
    report = {"train_patients": args.train_patients, "test_patients": len(truth),
              "follow_ups": scans, "steps": args.steps, "tracker": run.name, "train_seconds": seconds,
              "train_patches_per_s": patches / seconds if seconds else None,
              "fill_seconds": infer_seconds, "peak_memory_mib": _peak_memory_mib(args.device),
              "device": args.device, "cpu_kernels": cpu_kernels(),
              "tracker_outcomes": _outcomes(provenance),
              "new_lesions": new, "recist_ceilings": ceilings,
              "methods": {m: {**_summary(lesion_rows[m]), "recist_agreement": recist[m]}
                          for m in METHODS}}
    (work / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    _print(report)


def _peak_memory_mib(device: str) -> float:
    """Peak memory of this process: CUDA memory allocated by torch on a GPU, else the peak
    resident set size (Linux reports it in KiB)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cohort(work: Path, name: str, patients: int, *, seed: int) -> Path:
    raw, cache = work / f"raw_{name}", work / f"cache_{name}"
    if not (raw / "manifest.csv").is_file():
        generate_cohort(raw, patients=patients, size="small", seed=seed, fmt="nifti")
    if not (cache / "manifest.json").is_file() or len(read_manifest(cache).patients) < patients:
        pin_key(cache, f"tracking {name} seed {seed}")
        run_preprocess(discover(raw / "manifest.csv"), cache, config=PreprocessConfig(),
                       workers=1)
    return cache


def _write_baselines(hidden: Path, work: Path, truth: dict[str, PatientData],
                     prior_sd: float) -> None:
    """Derived caches whose follow-up masks come from the three baseline methods, on each
    follow-up's own grid like the tracker's (the baseline lesion carried there by the rigid
    registration, nearest neighbour; ``scaled`` with the tracker's scale fit)."""
    from medseq.tracker.views import warp_labels

    levels = FitLevels.for_cache(read_manifest(hidden).config, prior_sd)
    for method in ("registration", "scaled", "grower"):
        def labels_of(pid: str, position: int, view: Any, method: str = method) -> np.ndarray:
            data = truth[pid]
            base, follow = data.timepoints[0], data.timepoints[position]
            labels = np.zeros(view.shape, dtype=np.uint8)
            for n in range(1, len(base.voxels) + 1):
                if method == "scaled":
                    lesion = _scaled(base.components == n, base.image, follow.image,
                                     view.to_view, levels)
                else:
                    lesion = warp_labels(base.components == n, view.to_view, view.shape)
                if method == "grower":
                    lesion = _grow(base.image[base.components == n], follow.image, lesion)
                labels[lesion & (labels == 0)] = n
            return labels

        _write_filled(hidden, work / f"filled_{method}", truth, labels_of)


def _write_filled(hidden: Path, out: Path, truth: dict[str, PatientData],
                  labels_of: Callable[[str, int, Any], np.ndarray]) -> None:
    """A derived cache of ``hidden`` whose follow-up label maps are ``labels_of(patient,
    position, view)``, on each follow-up's own grid (patients in ``truth`` only)."""
    from medseq.tracker.views import load_view

    manifest = read_manifest(hidden)
    config = normaliser(manifest.config)
    records = {}
    for pid, record in manifest.patients.items():
        moved = relocate(record, hidden, out)
        data = truth.get(pid)
        if data is not None:
            affine = np.asarray(record.grid_affine or np.eye(4))
            for position, tp in enumerate(record.timepoints[1:], start=1):
                view = load_view(hidden, record, position, config)
                moved = write_label_map(out, moved, position, labels_of(pid, position, view),
                                        affine, tp, view=view if view.native else None,
                                        grid_shape=data.timepoints[0].image.shape)
        records[pid] = moved
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, manifest.model_copy(update={"patients": records}))


def _ceilings(hidden: Path, work: Path, truth: dict[str, PatientData], provenance: Provenance,
              truth_tracking: dict[str, Any]) -> dict[str, Any]:
    """RECIST agreement of the tracker's masks with one error source removed by the truth, and
    of the true masks moved by a sub-voxel shift: where the gap to the truth lies.

    - ``true_gone``: the tracker's masks, with every baseline lesion the truth says vanished
      cleared and called vanished;
    - ``true_new``: the tracker's masks plus the true new lesions;
    - ``true_gone_and_new``: both;
    - ``truth_shifted``: the true masks, each component moved by a random shift of up to half
      a voxel per axis (seeded): how far RECIST moves with a re-delineation at this grid's
      resolution, the noise floor of any method;
    - ``true_scale``: no network and no fit: each baseline lesion carried by the registration
      and scaled by its true diameter ratio (the cube root of the truth's volume ratio; gone
      where the truth has no voxel of it), with no new lesions: what a method that draws the
      baseline's shape at exactly the right size reaches;
    - ``true_scale_jitter``: the same with each ratio multiplied by a seeded log-normal error
      of SD ``SCALE_JITTER``: how exactly the size has to be measured.
    """
    from scipy import ndimage

    tracker_labels = _label_maps(work / "filled_tracker")

    def gone(pid: str, position: int) -> set[int]:
        return {n for n, parts in truth[pid].links[position].items() if not parts}

    def oracle(clear: bool, add: bool) -> Callable[[str, int, Any], np.ndarray]:
        def labels_of(pid: str, position: int, view: Any) -> np.ndarray:
            labels = tracker_labels(pid, position).astype(np.uint8)
            if clear:
                labels[np.isin(labels, sorted(gone(pid, position)))] = 0
            if add:
                tp = truth[pid].timepoints[position]
                count = len(truth[pid].timepoints[0].voxels)
                for k, j in enumerate(truth[pid].new[position], start=1):
                    labels[tp.components == j] = count + k
            return labels
        return labels_of

    rng = np.random.default_rng(0)

    def shifted(pid: str, position: int, view: Any) -> np.ndarray:
        data = truth[pid]
        tp = data.timepoints[position]
        value = {j: n for n, parts in data.links[position].items() for j in parts}
        count = len(data.timepoints[0].voxels)
        value.update({j: count + k for k, j in enumerate(data.new[position], start=1)})
        labels = np.zeros(tp.components.shape, dtype=np.uint8)
        for j in range(1, len(tp.voxels) + 1):
            moved = ndimage.shift((tp.components == j).astype(np.float32),
                                  rng.uniform(-0.5, 0.5, 3), order=1) >= 0.5
            labels[moved & (labels == 0)] = value[j]
        return labels

    def true_scale(jitter: float) -> Callable[[str, int, Any], np.ndarray]:
        draw = np.random.default_rng(1)

        def labels_of(pid: str, position: int, view: Any) -> np.ndarray:
            data = truth[pid]
            base, tp = data.timepoints[0], data.timepoints[position]
            per_voxel = float(np.prod(tp.spacing) / np.prod(base.spacing))
            labels = np.zeros(view.shape, dtype=np.uint8)
            for n in range(1, len(base.voxels) + 1):
                voxels = sum(int(tp.voxels[j - 1]) for j in data.links[position][n])
                error = float(np.exp(draw.normal(0.0, jitter))) if jitter else 1.0
                if voxels:
                    ratio = (voxels * per_voxel / float(base.voxels[n - 1])) ** (1.0 / 3.0)
                    lesion = _carried_scaled(base.components == n, view.to_view, view.shape,
                                             ScaleFit(ratio * error, (0.0, 0.0, 0.0), 0.0))
                    labels[lesion & (labels == 0)] = n
            return labels
        return labels_of

    # fill_cache records each follow-up's tracker lesions in baseline-lesion order (1..n).
    vanished = Provenance(filled=provenance.filled, lesions=[])
    order: dict[tuple[str, int], int] = {}
    for source in provenance.lesions:
        if source.source == SOURCE_TRACKER:
            key = (source.patient_id, source.timepoint)
            order[key] = n = order.get(key, 0) + 1
            if source.patient_id in truth and n in gone(*key):
                source = replace(source, status=VANISHED, value=0)
        vanished.lesions.append(source)
    out = {}
    for name, producer, sources in (("true_gone", oracle(True, False), vanished),
                                    ("true_new", oracle(False, True), provenance),
                                    ("true_gone_and_new", oracle(True, True), vanished),
                                    ("truth_shifted", shifted, None),
                                    ("true_scale", true_scale(0.0), None),
                                    ("true_scale_jitter", true_scale(SCALE_JITTER), None)):
        filled = work / f"ceiling_{name}"  # rewritten: it follows this run's tracker
        shutil.rmtree(filled, ignore_errors=True)
        _write_filled(hidden, filled, truth, producer)
        results = track_cache(filled)
        if sources is not None:
            results = apply_not_found(results, sources)
        out[name] = _recist_agreement(results, truth_tracking)
    return out


def _new_lesion_visibility(truth: dict[str, PatientData], preprocess_config: dict[str, Any],
                           lung_below: float) -> dict[str, Any]:
    """How visible the true new lesions are: per lesion, its mean minus the median of the
    tissue around it (1-3 voxels out, other lesions excluded) on the follow-up, in HU, over
    that tissue's SD (the contrast-to-noise ratio a reader or a detector has to go on)."""
    hu = 1.0 / units_per_hu(preprocess_config)
    rows: list[dict[str, Any]] = []
    for data in truth.values():
        for t in range(1, len(data.timepoints)):
            tp = data.timepoints[t]
            image = tp.image.astype(np.float64)
            for j in data.new[t]:
                lesion = tp.components == j
                ring = surrounding_tissue(lesion, tp.components)
                around = float(np.median(image[ring]))
                contrast = (float(image[lesion].mean()) - around) * hu
                noise = float(image[ring].std()) * hu
                rows.append({"voxels": int(lesion.sum()), "contrast_hu": contrast,
                             "noise_hu": noise, "cnr": abs(contrast) / max(noise, 1e-6),
                             "tissue": "lung" if around < lung_below else "other"})
    return {"lesions": rows,
            "cnr_at_least_1": {tissue: sum(r["cnr"] >= 1 for r in rows if r["tissue"] == tissue)
                               for tissue in ("lung", "other")},
            "count": {tissue: sum(r["tissue"] == tissue for r in rows)
                      for tissue in ("lung", "other")}}


def _subtraction_froc(train_cache: Path, filled: Path, truth: dict[str, PatientData],
                      preprocess_config: dict[str, Any]) -> list[dict[str, Any]]:
    """The subtraction detector at thresholds chosen on the training cohort's follow-ups for
    several false-positive limits (``train-tracker`` uses ``subtract_max_fp_per_scan``):
    sensitivity and false positives per follow-up on the test set, with the tracker's
    follow-up masks explaining what changed (as in ``track --tracker``)."""
    from medseq.tracker.detect import choose_subtraction_threshold, detect_by_subtraction
    from medseq.tracker.train import subtraction_scores
    from medseq.tracker.views import warp_labels

    manifest = read_manifest(train_cache)
    config = normaliser(manifest.config)
    train = [d for r in manifest.ok_patients()
             if (d := load_patient(train_cache, r, config)) is not None]
    train_scored, train_scans, _ = subtraction_scores(train, manifest.config)
    label_map = _label_maps(filled)
    found: list[tuple[float, int]] = []  # (best score on the lesion, lesion id)
    false: list[float] = []
    scans = total = 0
    for pid, data in truth.items():
        base = data.timepoints[0]
        count = len(base.voxels)
        lesions = [base.components == n for n in range(1, count + 1)]
        for t in range(1, len(data.timepoints)):
            tp = data.timepoints[t]
            labels = label_map(pid, t)
            tracked = [(labels > 0) & (labels <= count)]
            carried = [warp_labels(m, tp.to_view, tp.image.shape) for m in lesions]
            candidates = detect_by_subtraction(
                tp.image.astype(np.float32), tp.body, tp.spacing, tracked=tracked,
                baseline=carried, baseline_image=base.image, to_view=tp.to_view,
                preprocess_config=preprocess_config)
            for j in data.new[t]:
                mask = tp.components == j
                scores = [c.score for c in candidates if (c.mask & mask).any()]
                found.append((max(scores) if scores else -1.0, total))
                total += 1
            truths = np.isin(tp.components, data.new[t]) & (tp.components > 0)
            false += [c.score for c in candidates if not (c.mask & truths).any()]
            scans += 1
    out = []
    for limit in (0.02, 0.1, 0.5):
        threshold = choose_subtraction_threshold(train_scored, train_scans, limit)
        if threshold is None:
            continue
        hits = sum(score >= threshold for score, _ in found)
        out.append({"train_fp_limit": limit, "threshold": threshold,
                    "sensitivity_pct": 100 * hits / total if total else None,
                    "found": hits, "new_lesions": total,
                    "fp_per_scan": sum(s >= threshold for s in false) / max(scans, 1)})
    return out


def _scaled(lesion: np.ndarray, base_image: np.ndarray, follow: np.ndarray,
            to_view: np.ndarray, levels: FitLevels, size: int = 32) -> np.ndarray:
    """The baseline lesion carried by the registration, then scaled and moved as
    :func:`medseq.tracker.refine.fit_carried` fits it (on a ``size``^3 crop)."""
    from medseq.tracker.refine import fit_carried
    from medseq.tracker.views import apply

    point = apply(to_view, np.argwhere(lesion).mean(axis=0))
    fit = fit_carried(follow, base_image, lesion, to_view, point, size, levels)
    return _carried_scaled(lesion, to_view, follow.shape, fit, size)


def _carried_scaled(lesion: np.ndarray, to_view: np.ndarray, shape: tuple[int, ...],
                    fit: ScaleFit, size: int = 32) -> np.ndarray:
    """The baseline ``lesion`` (registered grid) carried onto a follow-up grid of ``shape`` by
    ``to_view``, scaled by ``fit`` about its carried centroid and moved by its shift: trilinear,
    >= 0.5, on a crop of at least ``size``^3 that holds the scaled lesion."""
    from medseq.tracker.prompt import paste
    from medseq.tracker.refine import scaled_view
    from medseq.tracker.views import apply, sample_crop

    inside = np.argwhere(lesion)
    point = apply(to_view, inside.mean(axis=0))
    centre = np.rint(point).astype(int)
    reach = float(np.abs(inside - inside.mean(axis=0)).max()) * fit.scale
    size = max(size, 2 * int(np.ceil(reach)) + 8)
    out = np.zeros(shape, dtype=bool)
    paste(out, sample_crop(lesion, scaled_view(to_view, point, fit), centre, size, order=1) >= 0.5,
          centre)
    return out


def _grow(baseline_values: np.ndarray, follow: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """Region growing from the carried lesion's centroid within 2.5 SD of the baseline
    lesion's intensity, inside the carried lesion grown by 3 voxels."""
    from scipy import ndimage

    if not lesion.any():
        return lesion
    values = baseline_values.astype(np.float32)
    mean, spread = float(values.mean()), max(2.5 * float(values.std()), 0.04)
    region = ndimage.binary_dilation(lesion, structure=np.ones((3, 3, 3)), iterations=3)
    accept = region & (np.abs(follow.astype(np.float32) - mean) <= spread)
    components, count = ndimage.label(accept, structure=np.ones((3, 3, 3)))
    if not count:
        return accept
    seed = tuple(round(float(v)) for v in np.argwhere(lesion).mean(axis=0))
    chosen = int(components[seed])
    if not chosen:
        overlap = np.bincount(components[lesion], minlength=count + 1)[1:]
        chosen = int(np.argmax(overlap)) + 1 if overlap.max() else 0
    return components == chosen if chosen else np.zeros_like(accept)


def _label_maps(filled: Path) -> Callable[[str, int], np.ndarray]:
    """(patient, follow-up position) -> that follow-up's label map in ``filled``, on its own
    grid (the grid the truth is loaded on); the manifest is read once."""
    from medseq.io.nifti import load_nifti

    records = read_manifest(filled).patients

    def labels(pid: str, index: int) -> np.ndarray:
        tp = records[pid].timepoints[index]
        return load_nifti(filled / str(tp.mask_native or tp.mask)).array

    return labels


def _lesion_metrics(filled: Path, truth: dict[str, PatientData], lung_below: float
                    ) -> list[dict[str, Any]]:

    rows = []
    label_map = _label_maps(filled)
    for pid, data in truth.items():
        base = data.timepoints[0]
        base_affine = np.diag([*base.spacing, 1.0])
        base_ld, lung = [], []
        for n in range(1, len(base.voxels) + 1):
            lesion = base.components == n
            base_ld.append(_sod(lesion, base_affine))
            lung.append(is_lung_lesion(base.image, lesion, lung_below))
        for t in range(1, len(data.timepoints)):
            labels = label_map(pid, t)
            tp = data.timepoints[t]
            affine = np.diag([*tp.spacing, 1.0])
            for n in range(1, len(base.voxels) + 1):
                true_mask = np.isin(tp.components, data.links[t][n]) & (tp.components > 0)
                pred = labels == n
                row: dict[str, Any] = {"present": bool(true_mask.any()),
                                       "predicted": bool(pred.any()),
                                       "true_voxels": int(true_mask.sum())}
                if true_mask.any():
                    d = dice(pred, true_mask)
                    distance = (float(np.linalg.norm((np.argwhere(pred).mean(0)
                                                      - np.argwhere(true_mask).mean(0))
                                                     * tp.spacing)) if pred.any() else np.inf)
                    row.update(dice=d, found=bool(d > 0.1 and distance <= 10.0),
                               volume_error_ml=abs(float(pred.sum() - true_mask.sum()))
                               * float(np.prod(tp.spacing)) / 1000,
                               diameter_error_mm=abs(_sod(pred, affine) - _sod(true_mask, affine)),
                               tissue="lung" if lung[n - 1] else "other",
                               ld_baseline=base_ld[n - 1], ld_true=_sod(true_mask, affine),
                               ld_predicted=_sod(pred, affine))
                rows.append(row)
    return rows


def is_lung_lesion(image: np.ndarray, lesion: np.ndarray, lung_below: float) -> bool:
    """A lesion whose 2-voxel shell on ``image`` averages below ``lung_below`` (cache units of
    ``LUNG_SHELL_HU``) lies in the lung (also used by ``benchmarks/scale_fit.py``)."""
    from scipy import ndimage

    shell = ndimage.binary_dilation(lesion, iterations=2) & ~lesion
    return bool(image[shell].astype(np.float64).mean() < lung_below)


def _sod(mask: np.ndarray, affine: np.ndarray) -> float:
    return float(sum(les.longest_diameter_mm for les in find_lesions(mask, affine).lesions))


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    present = [r for r in rows if r["present"]]
    gone = [r for r in rows if not r["present"]]
    med = lambda key: statistics.median(r[key] for r in present) if present else None  # noqa: E731
    return {"lesions": len(present), "found_pct": 100 * sum(r["found"] for r in present)
            / max(len(present), 1), "median_dice": med("dice"),
            # the median sits on plateaus (a small lesion's Dice takes few values): the mean
            # tells runs apart that the median does not
            "mean_dice": statistics.fmean(r["dice"] for r in present) if present else None,
            "median_volume_error_ml": med("volume_error_ml"),
            "median_diameter_error_mm": med("diameter_error_mm"),
            "vanished": len(gone), "vanished_called_empty": sum(not r["predicted"] for r in gone),
            "ld_change_slope": {tissue: _slope([r for r in present if r["tissue"] == tissue])
                                for tissue in ("lung", "other")},
            "median_dice_by_voxels": {
                f"{lo}-{hi}" if hi else f">={lo}": statistics.median(sized)
                for lo, hi in SIZE_BINS
                if (sized := [r["dice"] for r in present
                              if r["true_voxels"] >= lo and (not hi or r["true_voxels"] < hi)])}}


def _slope(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Least-squares slope of predicted on true log(LD follow-up / LD baseline), over lesions
    measured at all three (None with fewer than 3)."""
    usable = [r for r in rows if min(r["ld_baseline"], r["ld_true"], r["ld_predicted"]) > 0]
    if len(usable) < 3:
        return {"lesions": len(usable), "slope": None}
    true = np.log([r["ld_true"] / r["ld_baseline"] for r in usable])
    predicted = np.log([r["ld_predicted"] / r["ld_baseline"] for r in usable])
    return {"lesions": len(usable), "slope": float(np.polyfit(true, predicted, 1)[0])}


def _recist_agreement(results: list[Any], truth: dict[str, Any]) -> dict[str, Any]:
    """Share of follow-ups whose category equals the truth-mask one, and the confusion
    ("truth->method": count), which says where they differ."""
    equal = total = 0
    confusion: dict[str, int] = {}
    for result in results:
        reference = truth.get(result.patient_id)
        if reference is None or not reference.tracked:
            continue
        true_by_tp = {r.timepoint: r.response for r in reference.responses if r.timepoint}
        for row in result.responses:
            if row.timepoint and row.timepoint in true_by_tp:
                total += 1
                equal += row.response == true_by_tp[row.timepoint]
                key = f"{_category(true_by_tp[row.timepoint])}->{_category(row.response)}"
                confusion[key] = confusion.get(key, 0) + 1
    return {"follow_ups": total, "equal_pct": 100 * equal / max(total, 1),
            "confusion": dict(sorted(confusion.items()))}


def _category(response: Any) -> str:
    return "none" if response is None else str(getattr(response, "value", response))


def _new_lesions(filled: Path, truth: dict[str, PatientData]) -> dict[str, Any]:
    found = total = false_positives = scans = 0
    label_map = _label_maps(filled)
    for pid, data in truth.items():
        count = len(data.timepoints[0].voxels)
        for t in range(1, len(data.timepoints)):
            labels = label_map(pid, t)
            tp = data.timepoints[t]
            proposals = [labels == v for v in np.unique(labels) if v > count]
            truths = [tp.components == j for j in data.new[t]]
            total += len(truths)
            found += sum(any((p & m).any() for p in proposals) for m in truths)
            false_positives += sum(not any((p & m).any() for m in truths) for p in proposals)
            scans += 1
    return {"new_lesions": total, "sensitivity_pct": 100 * found / total if total else None,
            "fp_per_scan": false_positives / max(scans, 1)}


def _outcomes(provenance: Provenance) -> dict[str, Any]:
    """What the tracker returned for the baseline lesions on the follow-ups (``found``,
    ``vanished`` or ``not_found``), and the peak probability of the not-found ones: an empty
    output under ``vanish_max_probability`` is vanished, above it not found, and a follow-up
    with a target not found is NE, so these say how close the empty outputs came to the rule."""
    tracked = [s for s in provenance.lesions if s.source == SOURCE_TRACKER]
    counts = Counter(s.status for s in tracked)
    peaks = [1.0 - s.confidence for s in tracked if s.status == NOT_FOUND]
    quartiles = ([float(q) for q in np.percentile(peaks, [25, 50, 75])] if peaks else None)
    return {"counts": dict(sorted(counts.items())), "not_found_peak_quartiles": quartiles}


def _print(report: dict[str, Any]) -> None:
    def cell(value: Any, digits: int = 2) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    print(f"train {report['train_patients']} patients (seed 1), test {report['test_patients']}"
          f" (seed 2), {report['follow_ups']} follow-ups; {report['steps']} steps, train "
          f"{cell(report['train_seconds'], 0)} s ({cell(report['train_patches_per_s'], 1)} "
          f"patches/s), fill {cell(report['fill_seconds'], 1)} s, peak memory "
          f"{cell(report['peak_memory_mib'], 0)} MiB on {report['device']} (CPU kernels "
          f"{report['cpu_kernels']})")
    print("| method | lesions | found % | median Dice | mean Dice | median abs vol err (mL) | "
          "median abs LD err (mm) | vanished called empty | RECIST equal % |")
    print("|---|---|---|---|---|---|---|---|---|")
    for method, m in report["methods"].items():
        print(f"| {method} | {m['lesions']} | {cell(m['found_pct'], 1)} | "
              f"{cell(m['median_dice'], 3)} | {cell(m['mean_dice'], 3)} | "
              f"{cell(m['median_volume_error_ml'])} | "
              f"{cell(m['median_diameter_error_mm'], 1)} | {m['vanished_called_empty']}/"
              f"{m['vanished']} | {cell(m['recist_agreement']['equal_pct'], 1)} |")
    for method, m in report["methods"].items():
        bins = ", ".join(f"{k} voxels {v:.3f}" for k, v in m["median_dice_by_voxels"].items())
        print(f"median Dice by true size, {method}: {bins}")
    for method, m in report["methods"].items():
        slopes = ", ".join(f"{k} {cell(v['slope'])} ({v['lesions']} lesions)"
                           for k, v in m["ld_change_slope"].items())
        print(f"slope of measured on true log diameter change, {method}: {slopes}")
    for method, m in report["methods"].items():
        pairs = ", ".join(f"{k} {v}" for k, v in m["recist_agreement"]["confusion"].items())
        print(f"RECIST truth->{method}: {pairs}")
    outcomes = report["tracker_outcomes"]
    peaks = outcomes["not_found_peak_quartiles"]
    print("tracker outcomes on the follow-ups: " + ", ".join(
        f"{k} {v}" for k, v in outcomes["counts"].items())
        + ("" if peaks is None else "; peak probability of the not-found ones (quartiles) "
           + " / ".join(f"{q:.2f}" for q in peaks)))
    new = report["new_lesions"]
    print(f"new lesions (tracker): {new['new_lesions']} true, sensitivity "
          f"{cell(new['sensitivity_pct'], 1)} %, {cell(new['fp_per_scan'])} false positives "
          "per scan")
    seen = new["visibility"]
    print("true new lesions with contrast-to-noise >= 1: " + ", ".join(
        f"{tissue} {seen['cnr_at_least_1'][tissue]} of {seen['count'][tissue]}"
        for tissue in ("lung", "other")) + "; per lesion (voxels, contrast HU / noise HU): "
        + ", ".join(f"{r['tissue']} {r['voxels']} {r['contrast_hu']:.0f}/{r['noise_hu']:.0f}"
                    for r in seen["lesions"]))
    for point in new.get("subtraction_froc", []):
        print(f"subtraction detector at the threshold with <= {point['train_fp_limit']} false "
              f"positives per training follow-up ({point['threshold']:.2f}): "
              f"{point['found']} of {point['new_lesions']} test new lesions "
              f"({cell(point['sensitivity_pct'], 1)} %), {cell(point['fp_per_scan'], 3)} "
              "false positives per follow-up")
    for name, agreement in report["recist_ceilings"].items():
        pairs = ", ".join(f"{k} {v}" for k, v in agreement["confusion"].items())
        print(f"RECIST equal, diagnostic {name}: {cell(agreement['equal_pct'], 1)} % ({pairs})")


if __name__ == "__main__":
    main()
