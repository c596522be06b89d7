"""Benchmark: time to generate a synthetic cohort, against the 10-minute budget and a disk floor.

Generates ``--patients`` (default 100) ``medium`` patients (both formats, 2-6 scans each) with
``--workers`` (default 2) processes into a temporary folder, then copies the written tree once
(the same bytes, read and written: a floor no generator can beat on this disk). Prints wall time,
seconds per scan, the time extrapolated to 100 patients and its ratio to the 600 s target, and the
ratio of generation to the copy measured in the same run. ``--size large`` also reports the peak
memory of one worker process (target: under 4 GB).

Usage:
    python benchmarks/sample_data_speed.py [--patients 100] [--workers 2] [--size medium]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

from medseq.data.synthetic import generate_cohort

TARGET_SECONDS_PER_100 = 600.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", default="medium", choices=("small", "medium", "large"))
    parser.add_argument("--format", default="both", choices=("dicom", "nifti", "both"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cohort"
        start = time.perf_counter()
        generate_cohort(
            out, patients=args.patients, size=args.size, fmt=args.format, seed=args.seed,
            workers=args.workers,
        )
        elapsed = time.perf_counter() - start
        truth = json.loads((out / "ground_truth.json").read_text())
        scans = sum(len(p["timepoints"]) for p in truth["patients"])
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        start = time.perf_counter()
        shutil.copytree(out, Path(tmp) / "copy")
        copy = time.perf_counter() - start
    per_100 = elapsed * 100.0 / args.patients
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    if args.workers == 1:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"{args.patients} {args.size} patients ({scans} scans, {size / 1e6:.0f} MB, "
          f"format {args.format}) with {args.workers} workers: {elapsed:.1f} s "
          f"({elapsed / scans:.2f} s per scan)")
    print(f"extrapolated to 100 patients: {per_100:.0f} s; ratio to the {TARGET_SECONDS_PER_100:.0f} s "
          f"target {per_100 / TARGET_SECONDS_PER_100:.2f} (target < 1)")
    print(f"copying the written tree: {copy:.1f} s; generation / copy {elapsed / copy:.1f}")
    print(f"peak memory of a worker: {peak_mb:.0f} MB (target < 4096 MB)")


if __name__ == "__main__":
    main()
