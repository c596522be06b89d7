"""Benchmark: the subtraction detector's time and memory on one follow-up of a given size.

A CT-like pair (soft tissue in air, 4 HU noise, a sub-voxel rigid offset between the scans) is
made in memory; the detector (:func:`medseq.tracker.detect.detect_by_subtraction`) runs on it
once, and so does the reference measured in the same run: one trilinear resampling of the
baseline onto the follow-up's grid, which any subtraction has to do. Prints seconds, the ratio
to the reference and the peak resident memory against the inputs' size.

Usage:
    python benchmarks/subtraction.py [--shape 512 512 200] [--spacing 0.8 0.8 1.5]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medseq.tracker.detect import detect_by_subtraction
from medseq.tracker.subtraction import resample_to_view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 200])
    parser.add_argument("--spacing", type=float, nargs=3, default=[0.8, 0.8, 1.5])
    args = parser.parse_args()
    shape = tuple(args.shape)
    rng = np.random.default_rng(0)
    tissue = np.zeros(shape, dtype=bool)
    tissue[shape[0] // 8: shape[0] * 7 // 8, shape[1] // 6: shape[1] * 5 // 6, :] = True
    noise = np.float32(4.0 / 500.0)  # 4 HU in the default window's units
    baseline = np.where(tissue, np.float32(0.52), np.float32(0.0))
    follow = baseline + rng.standard_normal(shape, dtype=np.float32) * noise * tissue
    baseline += rng.standard_normal(shape, dtype=np.float32) * noise * tissue
    move = np.eye(4)
    move[:3, 3] = [0.3, -0.2, 0.1]
    started = time.perf_counter()
    resample_to_view(baseline, move, shape)
    reference = time.perf_counter() - started
    started = time.perf_counter()
    found = detect_by_subtraction(follow, tissue, np.asarray(args.spacing), tracked=[],
                                  baseline=[], baseline_image=baseline, to_view=move,
                                  preprocess_config={"ct_window": [-200.0, 300.0],
                                                     "ct_range": [0.0, 1.0]})
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    inputs = (follow.nbytes + baseline.nbytes + tissue.nbytes) / 2**20
    print(f"follow-up {'x'.join(map(str, shape))} ({follow.size / 1e6:.1f} M voxels): "
          f"detector {seconds:.1f} s ({len(found)} candidates before any threshold), "
          f"{seconds / reference:.1f} x one resampling ({reference:.1f} s); peak resident "
          f"memory {peak:.0f} MiB, {peak / inputs:.1f} x the inputs ({inputs:.0f} MiB)")


if __name__ == "__main__":
    main()
