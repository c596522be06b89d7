"""Benchmark: load a 512x512x300 CT series into a Volume, as a ratio to dcm2niix.

Writes an int16 CT series (uncompressed, explicit VR little endian, shuffled random names) to a
temporary folder, or uses ``--path`` (a folder holding one series). Then times, interleaved,
``medseq.io.dicom.load_series`` and ``dcm2niix -z n`` converting the same files, and prints
the median of each and their ratio (target <= 1.5), in wall time and in CPU time.
The page cache is warm for both.

Usage:
    python benchmarks/load_series.py [--path DIR] [--runs 5] [--slices 300]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medseq.io.dicom import load_series


def make_series(folder: Path, slices: int) -> None:
    from tests.dicom_factory import write_series

    rng = np.random.default_rng(0)
    pixels = rng.integers(-1024, 3000, size=(512, 512, slices), dtype=np.int16)
    write_series(folder, shape=(512, 512, slices), spacing=(0.7, 0.7, 1.0), pixels=pixels,
                 shuffle=True, naming="random", rescale_intercept=-1024)


def time_medseq(files: list[Path]) -> tuple[float, float]:
    """Wall and CPU seconds of one load_series call."""
    cpu, start = time.process_time(), time.perf_counter()
    volume = load_series(files)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert volume.array.size > 0
    return elapsed, cpu


def time_dcm2niix(folder: Path, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the child) of one dcm2niix run."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "out", "-o", str(out), str(folder)],
                   check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, help="a folder holding one DICOM series")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--slices", type=int, default=300)
    args = parser.parse_args()
    if shutil.which("dcm2niix") is None:
        sys.exit("dcm2niix is not on PATH (pip install dcm2niix)")
    with tempfile.TemporaryDirectory(prefix="medseq-bench-") as tmp:
        folder = args.path
        if folder is None:
            folder = Path(tmp) / "series"
            print(f"writing a 512x512x{args.slices} CT series to {folder} ...", file=sys.stderr)
            make_series(folder, args.slices)
        files = sorted(p for p in folder.iterdir() if p.is_file())
        out = Path(tmp) / "nifti"
        time_medseq(files)  # warm the page cache and imports for both
        time_dcm2niix(folder, out)
        ours: list[tuple[float, float]] = []
        theirs: list[tuple[float, float]] = []
        for _ in range(args.runs):
            ours.append(time_medseq(files))
            theirs.append(time_dcm2niix(folder, out))
    mine, ref = (statistics.median(t[0] for t in ours), statistics.median(t[0] for t in theirs))
    mine_cpu, ref_cpu = (statistics.median(t[1] for t in ours),
                         statistics.median(t[1] for t in theirs))
    print(f"files: {len(files)}")
    print(f"medseq load_series: {mine:.3f} s wall, {mine_cpu:.3f} s CPU (median of {args.runs})")
    print(f"dcm2niix -z n:      {ref:.3f} s wall, {ref_cpu:.3f} s CPU (median of {args.runs})")
    print(f"CPU-time ratio: {mine_cpu / ref_cpu:.2f}")
    print(f"ratio: {mine / ref:.2f} (wall time; target <= 1.5)")


if __name__ == "__main__":
    main()
