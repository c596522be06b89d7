"""Benchmark: how detectable the tracking benchmark's new lesions are for an ideal observer.

The tracking benchmark's new-lesion target (sensitivity >= 90% at <= 0.5 false positives per
scan) asks a detector to find lesions of 0.3-0.9 mL that arise in soft tissue within a few HU of
their organ. This script measures the most any detector could do with them. For every new
lesion on every follow-up of the test cohort (the generator's own plan, the cohort that
``benchmarks/tracking.py`` calls ``test``: seed 2, ``small``), it renders the scan twice, with
and without that lesion, with the same scanner noise (the generator seeds the noise by
position, not by content), so the difference is the lesion's exact signal ``s`` in HU on the
scan's own grid. Against the generator's own noise model (Gaussian, SD ``noise_hu``, smoothed
in-plane by its Gaussian kernel, independent between slices, plus the rounding to integer HU),
the ideal observer that knows the signal, its place and everything behind it (signal known
exactly, background known exactly) has detectability

    d'^2 = s^T C^-1 s, computed slice by slice in Fourier space as sum |S(k)|^2 / (n P(k)).

No detector does better at the lesion's place; one that must also find the place, and that
estimates the background from the baseline scan (with its own noise), does worse. An observer
that keeps false positives per scan at or below ``F`` over ``M`` places a lesion could occupy
can flag each place at a false-alarm rate of at most about ``F / M``; its chance of flagging a
lesion is then at most ``Phi(d' - z)``, with ``z`` the normal quantile of ``1 - F / M``.
Two more observers bracket what practical detectors use: the same signal under white noise
of the same SD, and the lesion's **mean** contrast alone (the signal summed over its true mask
over the SD of the noise summed over it: a detector of brighter or darker blobs).

Reported: per lesion its organ, volume, voxels, mean contrast to what is behind it and the
three ``d'``; for each observer the expected number found at ``F = 0.5`` for several ``M``
(10, 100, and the scanned volume of the host organs over the volume of a 10 mm ball, the
tracking benchmark's "found" radius), with the background known and with ``d' / sqrt(2)``
(the background read from a baseline scan with equal noise: an approximation, resampling
changes the noise).

Usage:
    python benchmarks/new_lesion_bound.py [--patients 60] [--seed 2] [--out bound.json]
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from medseq.arrays import nonzero_box
from medseq.data.synthetic import generate_cohort, portable
from medseq.data.synthetic.cohort import CohortSpec
from medseq.data.synthetic.coords import BodyCoords
from medseq.data.synthetic.plan import ORGANS, PatientPlan
from medseq.data.synthetic.render import NOISE_CORRELATION_VOXELS, render_scan
from medseq.data.synthetic.truth import ScanTruth, patient_truth

FALSE_POSITIVES_PER_SCAN = 0.5
OBSERVERS = ("d_prime", "d_prime_white", "d_prime_mean")
"""The ideal observer; the same signal under white noise of the same SD; the lesion's mean
contrast alone."""
BALL_ML = 4.0 / 3.0 * math.pi * 10.0**3 / 1000.0
"""A 10 mm ball: the tracking benchmark counts a lesion found within 10 mm of its centroid."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    spec = _tracking_cohort(args.patients, args.seed)
    rows: list[dict[str, Any]] = []
    searched: list[float] = []
    for index in range(args.patients):
        plan = spec.plan(index)
        truth = patient_truth(plan)
        for t in range(1, len(plan.scans)):
            scan_truth = truth.scans[t]
            new = [les for les in scan_truth.lesions if les.new]
            if not new:
                continue
            searched.append(_host_volume_ml(plan, t))
            with_all = render_scan(plan, t, scan_truth, seed=spec.seed).astype(np.float64)
            for les in new:
                others = ScanTruth(tuple(o for o in scan_truth.lesions if o is not les))
                without = render_scan(plan, t, others, seed=spec.seed).astype(np.float64)
                rows.append(_row(plan, t, les, with_all - without, without))
    report = _summary(rows, searched)
    text = json.dumps({"patients": args.patients, "seed": args.seed, **report, "lesions": rows},
                      indent=1)
    if args.out is not None:
        args.out.write_text(text + "\n")
    _print(report, rows)


def _tracking_cohort(patients: int, seed: int) -> CohortSpec:
    """The cohort ``benchmarks/tracking.py`` generates: ``generate_cohort``'s defaults but for
    the size, format, seed and number of patients it passes."""
    default = {name: p.default for name, p in inspect.signature(generate_cohort).parameters.items()}
    return CohortSpec(patients=patients, timepoints=default["timepoints"], fmt="nifti",
                      size="small", seed=seed, repositioning_mm=default["repositioning_mm"],
                      lesions=default["lesions"],
                      dicom_compression=default["dicom_compression"])


def _row(plan: PatientPlan, t: int, les: Any, signal: np.ndarray, behind: np.ndarray
         ) -> dict[str, Any]:
    inside = np.zeros(signal.shape, dtype=bool)
    (i, j, k), block = les.offset, les.inside
    inside[i:i + block.shape[0], j:j + block.shape[1], k:k + block.shape[2]] = block
    vox = float(np.prod(plan.scans[t].grid.spacing)) / 1000.0
    d = detectability(signal, plan.size.noise_hu)
    energy = float(np.square(signal).sum())
    return {"patient": plan.patient_id, "scan": t, "lesion": les.plan.lesion_id,
            "organ": les.plan.organ, "volume_ml": round(les.plan.course.volumes_ml[t], 3),
            "voxels": int(inside.sum()), "voxel_ml": round(vox, 4),
            "mean_contrast_hu": round(float(signal[inside].mean()), 2) if inside.any() else None,
            "behind_hu": round(float(np.median(behind[inside])), 1) if inside.any() else None,
            "signal_energy_hu2": round(energy, 1),
            "d_prime": round(d, 3), "d_prime_white": round(math.sqrt(energy) / plan.size.noise_hu, 3),
            "d_prime_mean": round(mean_observer(signal, inside, plan.size.noise_hu), 3)}


def detectability(signal: np.ndarray, noise_hu: float) -> float:
    """Ideal-observer d' of ``signal`` (HU, [x, y, z]) under the generator's scanner noise:
    white Gaussian noise smoothed in-plane by its Gaussian kernel and scaled back to SD
    ``noise_hu``, independent between slices, plus rounding to integer HU (variance 1/12)."""
    box = _support(signal, pad=8)
    s = signal[box]
    nx, ny = s.shape[:2]
    psd = _noise_psd((nx, ny), noise_hu)
    spectrum = np.abs(np.fft.fft2(s, axes=(0, 1))) ** 2
    return float(math.sqrt((spectrum / psd[:, :, None]).sum() / (nx * ny)))


def _noise_psd(shape: tuple[int, int], noise_hu: float) -> np.ndarray:
    """Per-slice power spectrum of the generator's noise on an (nx, ny) slice, rounding
    included: white noise smoothed in-plane by its Gaussian kernel, scaled back to SD
    ``noise_hu``, plus the rounding to integer HU (variance 1/12)."""
    kernel = portable.gaussian_kernel(NOISE_CORRELATION_VOXELS, truncate=3.0)
    norm = float(np.sum(kernel * kernel))
    kx = np.abs(np.fft.fft(kernel, shape[0])) ** 2
    ky = np.abs(np.fft.fft(kernel, shape[1])) ** 2
    return np.asarray(noise_hu**2 * np.outer(kx, ky) / norm**2 + 1.0 / 12.0)


def mean_observer(signal: np.ndarray, inside: np.ndarray, noise_hu: float) -> float:
    """d' of the lesion's mean contrast: the signal summed over the true mask, over the SD of
    the noise summed over it (what a detector that looks for a brighter or darker blob the
    lesion's size, with the background known, can use)."""
    if not inside.any():
        return 0.0
    box = _support(inside, pad=4)
    mask = inside[box].astype(np.float64)
    psd = _noise_psd(mask.shape[:2], noise_hu)
    spectrum = np.abs(np.fft.fft2(mask, axes=(0, 1))) ** 2
    variance = float((spectrum * psd[:, :, None]).sum() / (mask.shape[0] * mask.shape[1]))
    return abs(float(signal[inside].sum())) / math.sqrt(variance)


def _support(array: np.ndarray, pad: int) -> tuple[slice, ...]:
    """The non-zero voxels' box grown by ``pad`` (within the array); one voxel if none."""
    box = nonzero_box(array)
    if box is None:
        return tuple(slice(0, 1) for _ in array.shape)
    return tuple(slice(max(b.start - pad, 0), min(b.stop + pad, n))
                 for b, n in zip(box, array.shape, strict=True))


def _host_volume_ml(plan: PatientPlan, t: int) -> float:
    """Scanned volume of the organs new lesions arise in (their ellipsoids on scan ``t``)."""
    grid = plan.scans[t].grid
    coords = BodyCoords(grid, plan.body_to_world(t))
    inside = np.zeros(coords.shape, dtype=bool)
    for name in ORGANS:
        inside |= plan.anatomy.organs[name].distance(coords.x, coords.y, coords.z) < 0
    return float(inside.sum() * np.prod(grid.spacing) / 1000.0)


def _summary(rows: list[dict[str, Any]], searched_ml: list[float]) -> dict[str, Any]:
    cdf = statistics.NormalDist().cdf
    organ_places = statistics.median(searched_ml) / BALL_ML if searched_ml else 1.0
    bounds = []
    for label, places in (("M=10", 10.0), ("M=100", 100.0),
                          (f"M={organ_places:.0f} (host organs / 10 mm ball)", organ_places)):
        z = statistics.NormalDist().inv_cdf(1.0 - FALSE_POSITIVES_PER_SCAN / places)
        entry: dict[str, Any] = {"places": label, "z": round(z, 3)}
        for key in OBSERVERS:
            for background, factor in (("known_background", 1.0),
                                       ("from_baseline", 1.0 / math.sqrt(2.0))):
                found = sum(cdf(r[key] * factor - z) for r in rows)
                entry[f"{key}_{background}"] = {
                    "expected_found": round(found, 2),
                    "sensitivity_pct": round(100 * found / len(rows), 1) if rows else None}
        bounds.append(entry)
    return {"new_lesions": len(rows), "host_organ_ml_median": round(
        statistics.median(searched_ml), 1) if searched_ml else None, "bounds": bounds}


def _print(report: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    print(f"{report['new_lesions']} new lesion follow-ups; scanned host organs "
          f"{report['host_organ_ml_median']} mL (median)")
    print(f"{'patient':>8} {'scan':>4} {'organ':>12} {'mL':>6} {'vox':>4} {'contrast':>8} "
          f"{'behind':>7} {'ideal':>7} {'white':>7} {'mean':>7}")
    for r in sorted(rows, key=lambda r: r["d_prime_mean"]):
        print(f"{r['patient']:>8} {r['scan']:>4} {r['organ']:>12} {r['volume_ml']:>6} "
              f"{r['voxels']:>4} {r['mean_contrast_hu']!s:>8} {r['behind_hu']!s:>7} "
              f"{r['d_prime']:>7.2f} {r['d_prime_white']:>7.2f} {r['d_prime_mean']:>7.2f}")
    for b in report["bounds"]:
        cells = ", ".join(f"{key} {background}: {b[f'{key}_{background}']['sensitivity_pct']}%"
                          for key in OBSERVERS
                          for background in ("known_background", "from_baseline"))
        print(f"{b['places']} (z {b['z']}): {cells}")


if __name__ == "__main__":
    main()

