"""Benchmark: headers-only discovery of a 10,000-file DICOM tree, against reading files whole.

Writes a tree of ``--files`` single-frame CT files (``--patients`` patients, two studies each,
one series per study, a folder per series, random names, ``--size`` x ``--size`` int16 pixels,
512 by default as in CT: about 5 GiB for 10,000 files) to a temporary folder, or uses
``--path``. Then times, interleaved, ``medseq.io.discover.discover``
(header index, grouping, series choice and geometry for the whole tree) and pydicom reading
every file whole (``dcmread`` + ``pixel_array``), and prints files/s of each and their ratio.
The page cache is warm for both.

Usage:
    python benchmarks/scan.py [--files 10000] [--patients 20] [--size 512] [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medseq.io.discover import discover


def write_tree(root: Path, *, files: int, patients: int, size: int) -> None:
    """Write the tree quickly: one dataset per series, edited per slice."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    rng = random.Random(0)
    series_count = patients * 2
    per_series = files // series_count
    pixels = np.random.default_rng(0).integers(-1000, 2000, size=(size, size), dtype=np.int16)
    written = 0
    for p in range(patients):
        for s, date in enumerate(("20230110", "20230412")):
            ds = Dataset()
            ds.SOPClassUID = CTImageStorage
            ds.Modality = "CT"
            ds.PatientID = f"BENCH{p:03d}"
            ds.PatientName = "Bench^Patient"
            ds.StudyInstanceUID = generate_uid()
            ds.SeriesInstanceUID = generate_uid()
            ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = date
            ds.StudyTime = "101500"
            ds.SeriesDescription = "AXIAL 1.0"
            ds.SeriesNumber = 2
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.PixelSpacing = [0.7, 0.7]
            ds.SliceThickness = 1.0
            ds.Rows = ds.Columns = size
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            ds.RescaleSlope = 1
            ds.RescaleIntercept = 0
            ds.PixelData = pixels.tobytes()
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
            count = per_series if (p, s) != (patients - 1, 1) else files - written
            # A PACS export: a folder per patient and per series, meaningless names.
            folder = root / f"{rng.getrandbits(32):08X}" / f"{rng.getrandbits(32):08X}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID = generate_uid()
                ds.InstanceNumber = k + 1
                ds.ImagePositionPatient = [-90.0, -90.0, 100.0 + k * 1.0]
                pydicom.dcmwrite(folder / f"{rng.getrandbits(48):012x}", ds,
                                 enforce_file_format=True)
                written += 1


def time_discover(root: Path) -> tuple[float, int]:
    start = time.perf_counter()
    cohort = discover(root)
    elapsed = time.perf_counter() - start
    files = sum(tp.image.file_count for p in cohort.patients for tp in p.timepoints)
    return elapsed, files


def time_whole(paths: list[Path]) -> float:
    import pydicom

    start = time.perf_counter()
    total = 0
    for path in paths:
        total += int(pydicom.dcmread(path).pixel_array.size)
    elapsed = time.perf_counter() - start
    assert total > 0
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, help="an existing DICOM tree instead of a new one")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--size", type=int, default=512, help="rows and columns per slice")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medseq-bench-scan-") as tmp:
        root = args.path or Path(tmp)
        if args.path is None:
            start = time.perf_counter()
            write_tree(root, files=args.files, patients=args.patients, size=args.size)
            print(f"wrote {args.files} files in {time.perf_counter() - start:.1f} s",
                  file=sys.stderr)
        paths = sorted(p for p in root.rglob("*") if p.is_file())
        time_whole(paths[:200])  # warm the page cache and imports
        discover(root)
        discover_times: list[float] = []
        whole_times: list[float] = []
        found = 0
        for _ in range(args.runs):
            elapsed, found = time_discover(root)
            discover_times.append(elapsed)
            whole_times.append(time_whole(paths))
    n = len(paths)
    t_discover = statistics.median(discover_times)
    t_whole = statistics.median(whole_times)
    print(f"files: {n} ({found} placed in chosen series)")
    print(f"medseq discover (headers only): {t_discover:.2f} s = {n / t_discover:,.0f} files/s")
    print(f"pydicom reading every file whole: {t_whole:.2f} s = {n / t_whole:,.0f} files/s")
    print(f"speed-up (discover files/s over whole-read files/s): {t_whole / t_discover:.2f}x")


if __name__ == "__main__":
    main()
