"""Benchmark: the tracker's local scale fit against the generator's analytic lesion volumes.

For every baseline lesion and follow-up of a synthetic cohort that ``benchmarks/tracking.py``
generated and preprocessed (its ``--work``: ``raw_{cohort}/ground_truth.json`` and
``cache_{cohort}``), fits the lesion's diameter ratio as the tracker does
(:func:`medseq.tracker.refine.fit_carried` on the follow-up's own grid, 32^3 crops, the
tracker card's ``scale_prior_sd`` given as ``--prior-sd``) and compares it with the truth: the
cube root of the ratio of the generator's volumes (not of voxel counts, so small lesions are
judged against their real size). Nothing is trained; the fit has no learned parameters, so
the training cohort (the default) is where a change to it is judged.

Reports, for lesions present at the follow-up: the log error ``log(fitted / true)`` as median
of its absolute value, RMS, mean (the bias), the share within 0.1 (10%) and beyond 0.35, by
tissue (lung: the baseline lesion's 2-voxel shell below -150 HU on average, the tracking
benchmark's own rule; soft tissue by organ), by baseline size, by the generator's hidden change of rim
enhancement under treatment (sensitive lesions lose it, resistant ones gain it), for RECIST
target lesions, and the share of fits at the ends of the search; for lesions the truth says
vanished, the quartiles of the fitted ratio. The RECIST agreement such errors allow is the
tracking benchmark's ``true_scale`` and ``true_scale_jitter`` diagnostics.

Usage:
    python benchmarks/scale_fit.py --work /tmp/bench-tracking [--cohort train] [--prior-sd 0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracking import LUNG_SHELL_HU, SIZE_BINS, is_lung_lesion

from medseq.contracts.cache import read_manifest
from medseq.preprocess.pseudonym import pseudonym, read_salt
from medseq.tracker.intensity import cache_value
from medseq.tracker.pairs import load_patient, normaliser
from medseq.tracker.refine import SCALE_RANGE, FitLevels, fit_carried
from medseq.tracker.views import apply

MATCH_MM = 5.0
"""A baseline mask component is the generator's lesion whose centroid is this close."""
RIM_CHANGE_HU = 10.0
"""Rim enhancement lost or gained under treatment by more than this (HU): the ``rim`` rows."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True,
                        help="the --work folder of benchmarks/tracking.py")
    parser.add_argument("--cohort", choices=("train", "test"), default="train")
    parser.add_argument("--prior-sd", type=float, default=0.0,
                        help="scale_prior_sd of the fit (0: least squares, the default)")
    args = parser.parse_args()
    rows, unmatched = fit_rows(args.work, args.cohort, args.prior_sd)
    report = {"cohort": args.cohort, "prior_sd": args.prior_sd, "fits": len(rows),
              "unmatched_components": unmatched, "groups": summarise(rows)}
    name = f"scale_fit_{args.cohort}_prior{args.prior_sd:g}.json"
    (args.work / name).write_text(json.dumps({**report, "rows": rows}, indent=1) + "\n")
    print(f"{args.cohort} cohort, prior SD {args.prior_sd:g}: {len(rows)} fits "
          f"({unmatched} baseline components matched no lesion of the truth)")
    print("| lesions | n | median abs log error | RMS | mean (bias) | within 10% | beyond 0.35 |"
          " at a search bound |")
    print("|---|---|---|---|---|---|---|---|")
    for label, group in report["groups"].items():
        if "median_abs" in group:
            print(f"| {label} | {group['n']} | {group['median_abs']:.3f} | {group['rms']:.3f} | "
                  f"{group['bias']:+.3f} | {group['within_10pct']:.0%} | "
                  f"{group['beyond_035']:.0%} | {group['at_bound']:.0%} |")
        elif "quartiles" in group:
            q = ", ".join(f"{v:.2f}" for v in group["quartiles"])
            print(f"| {label}: fitted ratio quartiles {q} | {group['n']} | | | | | | |")


def fit_rows(work: Path, cohort: str, prior_sd: float) -> tuple[list[dict[str, Any]], int]:
    """One row per baseline lesion and follow-up: the fitted and the true diameter ratio."""
    truth = json.loads((work / f"raw_{cohort}" / "ground_truth.json").read_text())
    cache = work / f"cache_{cohort}"
    manifest = read_manifest(cache)
    config = normaliser(manifest.config)
    levels = FitLevels.for_cache(manifest.config, prior_sd)
    lung_below = cache_value(manifest.config, LUNG_SHELL_HU)
    key = read_salt(cache) if manifest.pseudonymised else None
    if manifest.pseudonymised and key is None:
        raise SystemExit(f"{cache}: no pseudonym key; run benchmarks/tracking.py first")
    rows: list[dict[str, Any]] = []
    unmatched = 0
    for patient in truth["patients"]:
        record = manifest.patients.get(pseudonym(patient["patient_id"], key) if key
                                       else patient["patient_id"])
        if record is None or record.status != "ok":
            continue
        data = load_patient(cache, record, config)
        if data is None:
            continue
        affine = np.asarray(record.grid_affine)
        base = data.timepoints[0]
        about = {lesion["lesion_id"]: lesion for lesion in patient["lesions"]}
        for n in range(1, len(base.voxels) + 1):
            mask = base.components == n
            lesion_id = _match(affine, base.centroids[n - 1], patient["timepoints"][0]["lesions"])
            if lesion_id is None:
                unmatched += 1
                continue
            volumes = [next((les["volume_ml"] for les in scan["lesions"]
                             if les["lesion_id"] == lesion_id), 0.0)
                       for scan in patient["timepoints"]]
            lung = is_lung_lesion(base.image, mask, lung_below)
            for t in range(1, len(data.timepoints)):
                tp = data.timepoints[t]
                point = apply(tp.to_view, base.centroids[n - 1])
                fit = fit_carried(tp.image, base.image, mask, tp.to_view, point, 32, levels)
                rows.append({"patient": record.patient_id, "timepoint": t, "lesion": lesion_id,
                             "organ": about[lesion_id]["organ"],
                             "tissue": "lung" if lung else "soft tissue",
                             "target": lesion_id in patient["targets"],
                             "baseline_voxels": int(base.voxels[n - 1]),
                             "rim_change_hu": about[lesion_id]["rim_change_hu"],
                             "true_ratio": (volumes[t] / volumes[0]) ** (1.0 / 3.0),
                             "fitted_ratio": fit.scale})
    return rows, unmatched


def _match(affine: np.ndarray, centroid: np.ndarray, lesions: list[dict[str, Any]]) -> str | None:
    """The generator's baseline lesion at a mask component's centroid (registered voxels)."""
    where = affine[:3, :3] @ centroid + affine[:3, 3]
    best = min(lesions, key=lambda les: float(np.linalg.norm(np.asarray(les["centroid_mm"])
                                                               - where)), default=None)
    if best is None or np.linalg.norm(np.asarray(best["centroid_mm"]) - where) > MATCH_MM:
        return None
    return str(best["lesion_id"])


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Error figures per group of present lesions, and the vanished lesions' fitted ratios."""
    groups: dict[str, Callable[[dict[str, Any]], bool]] = {
        "all present": lambda r: True,
        "lung": lambda r: r["tissue"] == "lung",
        "soft tissue": lambda r: r["tissue"] != "lung",
    }
    for organ in sorted({r["organ"].split("_")[0] for r in rows if r["tissue"] != "lung"}):
        groups[f"soft tissue, {organ}"] = partial(_in_organ, organ)
    for lo, hi in SIZE_BINS:
        label = (f"soft tissue, {lo}-{hi} baseline voxels" if hi
                 else f"soft tissue, >= {lo} baseline voxels")
        groups[label] = partial(_sized, lo, hi)
    groups[f"soft tissue, rim enhancement lost > {RIM_CHANGE_HU:g} HU"] = (
        lambda r: r["tissue"] != "lung" and r["rim_change_hu"] < -RIM_CHANGE_HU)
    groups[f"soft tissue, rim enhancement gained > {RIM_CHANGE_HU:g} HU"] = (
        lambda r: r["tissue"] != "lung" and r["rim_change_hu"] > RIM_CHANGE_HU)
    groups["RECIST targets, lung"] = lambda r: r["target"] and r["tissue"] == "lung"
    groups["RECIST targets, soft tissue"] = lambda r: r["target"] and r["tissue"] != "lung"
    out = {label: _errors([r for r in rows if r["true_ratio"] > 0 and keep(r)])
           for label, keep in groups.items()}
    gone = sorted(r["fitted_ratio"] for r in rows if r["true_ratio"] == 0)
    out["vanished"] = {"n": len(gone), "quartiles": (
        [float(v) for v in np.percentile(gone, [25, 50, 75])] if gone else [])}
    return out


def _in_organ(organ: str, row: dict[str, Any]) -> bool:
    return bool(row["tissue"] != "lung" and row["organ"].split("_")[0] == organ)


def _sized(lo: int, hi: int, row: dict[str, Any]) -> bool:
    voxels = row["baseline_voxels"]
    return bool(row["tissue"] != "lung" and voxels >= lo and (not hi or voxels < hi))


def _errors(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {"n": 0}
    error = np.log([r["fitted_ratio"] / r["true_ratio"] for r in rows])
    low, high = SCALE_RANGE
    bound = [r["fitted_ratio"] < low * 1.05 or r["fitted_ratio"] > high * 0.95 for r in rows]
    return {"n": len(rows), "median_abs": statistics.median(np.abs(error).tolist()),
            "rms": float(np.sqrt(np.mean(error**2))), "bias": float(error.mean()),
            "within_10pct": float(np.mean(np.abs(error) < 0.1)),
            "beyond_035": float(np.mean(np.abs(error) > 0.35)), "at_bound": float(np.mean(bound))}


if __name__ == "__main__":
    main()
