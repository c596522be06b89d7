"""Benchmark: the recorded synthetic truth against the analytic lesion geometry.

For a cohort of ``--patients`` (default 100, ``--size small``), compares

- every lesion's recorded longest diameter (measured on its mask) with the one its analytic shape
  gives on the same slice planes (:mod:`medseq.data.synthetic.analytic`), in in-plane voxels,
  for lesions no earlier lesion comes near (the others give voxels up), and with the interval
  a mask could measure (it must lie inside);
- every follow-up's recorded RECIST category with the course the analytic diameters give
  (:mod:`medseq.data.synthetic.analytic_course`): how many follow-ups voxelisation could flip
  (*borderline*), and whether the recorded category is one the analytic bounds allow and equals
  the analytic one everywhere else (both must hold; the script exits 1 otherwise).

Masks are rasterised as ``medseq sample-data`` does (:func:`patient_truth`); no image is rendered.

Usage:
    python benchmarks/synthetic_truth_crosscheck.py [--patients 100] [--size small] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import numpy as np

from medseq.data.synthetic.analytic_course import analytic_course
from medseq.data.synthetic.cohort import CohortSpec
from medseq.data.synthetic.truth import patient_truth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--size", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timepoints", default="2-6")
    args = parser.parse_args()
    lo, hi = (int(v) for v in args.timepoints.split("-"))
    spec = CohortSpec(
        patients=args.patients, timepoints=(lo, hi), fmt="both", size=args.size, seed=args.seed,
        repositioning_mm=None, lesions=(1, 5), dicom_compression="none",
    )
    errors: list[float] = []
    counts: Counter[str] = Counter()
    start = time.perf_counter()
    for index in range(args.patients):
        plan = spec.plan(index)
        truth = patient_truth(plan)
        analytic = analytic_course(plan)
        for t, scan in enumerate(truth.scans):
            voxel = float(np.mean(plan.scans[t].grid.spacing[:2]))
            for les in scan.lesions:
                geometry = analytic.scans[t][les.plan.lesion_id]
                longest = les.measurement.longest_diameter_mm
                counts["diameter outside its interval (must be 0)"] += not (
                    geometry.low_mm - 1e-6 <= longest <= geometry.high_mm + 1e-6
                )
                if geometry.isolated:
                    errors.append((longest - geometry.longest_mm) / voxel)
        for j, verdict in enumerate(truth.assessments):
            counts["follow-ups"] += 1
            inside = verdict.response in analytic.possible[j]
            same = verdict.response is analytic.course.verdicts[j].response
            if analytic.borderline(j):
                counts["borderline"] += 1
                counts["borderline, analytic differs"] += not same
            else:
                counts["decided"] += 1
                counts["decided, analytic differs (must be 0)"] += not same
            counts["outside the possible set (must be 0)"] += not inside
        counts["patients"] += 1
        counts["best response borderline"] += len(analytic.possible_best) > 1
        counts["best response outside the possible set (must be 0)"] += (
            truth.best_response not in analytic.possible_best
        )
    seconds = time.perf_counter() - start
    e = np.asarray(errors)
    print(f"{args.patients} {args.size} patients, seed {args.seed}: {seconds:.0f} s")
    print(
        f"mask - analytic longest diameter over {e.size} isolated lesion-scans (voxels): "
        f"min {e.min():+.2f}, 1st pct {np.percentile(e, 1):+.2f}, mean {e.mean():+.2f}, "
        f"99th pct {np.percentile(e, 99):+.2f}, max {e.max():+.2f}"
    )
    for name, value in counts.items():
        print(f"{name}: {value}")
    bad = sum(v for k, v in counts.items() if "must be 0" in k)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
