"""Benchmark: load one DICOM series into a Volume, as a ratio to dcm2niix.

Two series, written once with pydicom into ``--root`` (default ``.bench/``, ignored by git):

- ``ct``: a 512x512x``--slices`` int16 CT series (uncompressed, explicit VR little endian,
  shuffled random names); target ratio <= 0.9;
- ``mr``: a classic 256x256x170 MR series (one file per slice, like an MPRAGE) whose files carry
  long private headers as Philips and Siemens write them (benchmarks/scan.py); target <= 1.0.

Or ``--path`` (a folder holding one series). Times, interleaved, ``load_series`` and
``dcm2niix -z n`` converting the same files, and prints the median of each and their ratio,
in wall time and in CPU time. The page cache is warm for both.

Usage:
    python benchmarks/load_series.py [--series ct,mr] [--path DIR] [--runs 5] [--slices 300]
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medseq.io.dicom import load_series  # noqa: E402  (after the path insert)


def make_series(folder: Path, slices: int) -> None:
    from tests.dicom_factory import write_series

    rng = np.random.default_rng(0)
    pixels = rng.integers(-1024, 3000, size=(512, 512, slices), dtype=np.int16)
    write_series(folder, shape=(512, 512, slices), spacing=(0.7, 0.7, 1.0), pixels=pixels,
                 shuffle=True, naming="random", rescale_intercept=-1024)


def make_mr_series(folder: Path, slices: int = 170) -> None:
    import random

    from benchmarks.scan import _private_block
    from tests.dicom_factory import write_series

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 4000, size=(256, 256, slices), dtype=np.int16)
    draw = random.Random(0)
    write_series(folder, shape=(256, 256, slices), spacing=(1.0, 1.0, 1.0), pixels=pixels,
                 modality="MR", shuffle=True, naming="random", rescale_slope=1.0,
                 rescale_intercept=0.0, edit=lambda k, ds: _private_block(ds, draw))


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
    parser.add_argument("--series", default="ct,mr")
    parser.add_argument("--root", type=Path, default=REPO / ".bench")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--slices", type=int, default=300)
    args = parser.parse_args()
    if shutil.which("dcm2niix") is None:
        sys.exit("dcm2niix is not on PATH (pip install dcm2niix)")
    cases = [("path", args.path)] if args.path else [
        (kind, args.root / (f"load-ct-{args.slices}" if kind == "ct" else "load-mr-170"))
        for kind in args.series.split(",")]
    for kind, folder in cases:
        if not folder.exists():
            print(f"writing the {kind} series to {folder} ...", file=sys.stderr)
            tmp_folder = folder.with_name(folder.name + ".tmp")
            shutil.rmtree(tmp_folder, ignore_errors=True)
            (make_series(tmp_folder, args.slices) if kind == "ct" else
             make_mr_series(tmp_folder))
            tmp_folder.rename(folder)
        files = sorted(p for p in folder.iterdir() if p.is_file())
        with tempfile.TemporaryDirectory(prefix="medseq-bench-") as tmp:
            out = Path(tmp) / "nifti"
            time_medseq(files)  # warm the page cache and imports for both
            time_dcm2niix(folder, out)
            ours: list[tuple[float, float]] = []
            theirs: list[tuple[float, float]] = []
            for _ in range(args.runs):
                ours.append(time_medseq(files))
                theirs.append(time_dcm2niix(folder, out))
        mine, ref = (statistics.median(t[0] for t in ours),
                     statistics.median(t[0] for t in theirs))
        mine_cpu, ref_cpu = (statistics.median(t[1] for t in ours),
                             statistics.median(t[1] for t in theirs))
        target = {"ct": "0.9", "mr": "1.0"}.get(kind, "1.0")
        print(f"{kind}: {len(files)} files ({folder})")
        print(f"  medseq load_series: {mine:.3f} s wall, {mine_cpu:.3f} s CPU "
              f"(median of {args.runs})")
        print(f"  dcm2niix -z n:      {ref:.3f} s wall, {ref_cpu:.3f} s CPU")
        print(f"  CPU-time ratio: {mine_cpu / ref_cpu:.2f}")
        print(f"  ratio: {mine / ref:.2f} (wall time; target <= {target})")


if __name__ == "__main__":
    main()
