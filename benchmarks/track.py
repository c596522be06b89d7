"""Benchmark: ``medseq track`` speed on a medium cohort, and matching accuracy under stress.

1. Speed: generates a ``medium`` cohort (192x192x96 per scan, ``--patients`` patients, 3-5 scans,
   NIfTI), preprocesses it, then times ``track_cache`` (measure, match, RECIST; median of
   ``--runs``) and, as the reference in the same run, just reading every native mask the
   tracking reads. Prints seconds per patient and the ratio tracking / reading.
2. Accuracy: generates a ``small`` cohort with larger repositioning (``--repositioning`` mm,
   default 16) and more lesions (6-10 per patient), preprocesses and tracks it, and prints the
   correspondence precision and recall, new-lesion detection, worst measurement errors and the
   RECIST agreement with ``ground_truth.json``, once with the default (no organ information) and
   once with a ``--lesion-info`` CSV of the baseline lesions' organs, since the ground truth
   applies "at most 2 targets per organ". Patients whose registration fails in preprocess
   are reported and left out (they are not tracked).

Usage:
    python benchmarks/track.py [--patients 4] [--stress-patients 8] [--runs 3] [--workers 2]
                               [--repositioning 16] [--skip-speed]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medseq.contracts.cache import read_manifest
from medseq.data.synthetic import generate_cohort
from medseq.io.discover import discover
from medseq.io.nifti import load_nifti
from medseq.preprocess.config import PreprocessConfig
from medseq.preprocess.runner import run_preprocess
from medseq.tracking.pipeline import track_cache
from medseq.tracking.truth import compare_with_truth, write_lesion_info


def build(root: Path, *, patients: int, size: str, timepoints: tuple[int, int],
          lesions: tuple[int, int], repositioning: float | None, seed: int,
          workers: int) -> tuple[Path, dict]:
    gen = generate_cohort(root / "gen", patients=patients, timepoints=timepoints, fmt="nifti",
                          size=size, seed=seed, workers=workers, lesions=lesions,
                          repositioning_mm=repositioning)
    cache = root / "cache"
    summary = run_preprocess(discover(gen / "manifest.csv"), cache, config=PreprocessConfig(),
                             workers=workers, keep_ids=True)
    for failure in summary.failed:
        print(f"  preprocess failed for {failure.patient_id}: {failure.error}")
    return cache, json.loads((gen / "ground_truth.json").read_text())


def read_masks(cache: Path) -> None:
    for record in read_manifest(cache).ok_patients():
        for tp in record.timepoints:
            if tp.mask_native:
                load_nifti(cache / tp.mask_native)


def timed(func, runs: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--stress-patients", type=int, default=8)
    parser.add_argument("--repositioning", type=float, default=16.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-speed", action="store_true", help="Only the accuracy part.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if not args.skip_speed:
            speed(root, args)
        accuracy(root, args)


def speed(root: Path, args: argparse.Namespace) -> None:
    print(f"speed: medium cohort, {args.patients} patients (generating, preprocessing...)")
    cache, _ = build(root / "speed", patients=args.patients, size="medium",
                     timepoints=(3, 5), lesions=(2, 6), repositioning=None, seed=1,
                     workers=args.workers)
    n = len(read_manifest(cache).ok_patients())
    if not n:
        sys.exit("no patient was preprocessed: nothing to time")
    t_track = timed(lambda: track_cache(cache), args.runs)
    t_read = timed(lambda: read_masks(cache), args.runs)
    print(f"  track_cache: {t_track / n:.3f} s/patient; reading the masks alone: "
          f"{t_read / n:.3f} s/patient; ratio {t_track / t_read:.2f}")


def accuracy(root: Path, args: argparse.Namespace) -> None:
    print(f"accuracy: small cohort, {args.stress_patients} patients, repositioning "
          f"{args.repositioning} mm, 6-10 lesions")
    cache, truth = build(root / "stress", patients=args.stress_patients, size="small",
                         timepoints=(4, 6), lesions=(6, 10),
                         repositioning=args.repositioning, seed=2, workers=args.workers)
    results = track_cache(cache)
    tracked = sum(r.tracked for r in results)
    print(f"  patients tracked: {tracked} of {len(results)}")
    if not tracked:
        sys.exit("no patient was tracked: nothing measured")
    print("  without organ information (the default: every lesion its own organ):")
    print(json.dumps(compare_with_truth(results, truth).as_dict(), indent=2))
    # The ground truth picks targets with RECIST's "2 per organ"; give track the organs.
    info = write_lesion_info(truth, root / "stress" / "lesion_info.csv")
    with_organs = track_cache(cache, lesion_info=info)
    print("  with --lesion-info giving each baseline lesion's organ:")
    print(json.dumps(compare_with_truth(with_organs, truth).as_dict(), indent=2))


if __name__ == "__main__":
    main()
