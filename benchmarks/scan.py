"""Benchmark: ``medseq scan`` (whole process) against ``dcm2niix -b o`` on the same trees.

Two trees, written once with pydicom into ``--root`` (default ``.bench/`` of the repository,
which git ignores) and reused by later runs:

- ``ct``: ``--files`` single-frame 512x512 int16 CT files (explicit VR little endian, short
  headers), 10 patients x 2 studies, a folder per series, random names;
- ``mr``: ``--files`` classic single-frame 256x256 MR files with long private headers as
  Philips and Siemens write them (a few hundred private elements, a 12 KiB private binary
  blob and a private sequence: about 40 KiB of header per file).

Each tree is timed interleaved, ``--runs`` times, page cache warm: ``medseq scan --json``
and ``dcm2niix -b o`` (headers only: it writes the JSON sidecars, no images), each a whole
process. Prints files/s of each and the ratio (target: medseq >= dcm2niix, ratio >= 1).

Usage:
    python benchmarks/scan.py [--files 3000] [--runs 3] [--root .bench] [--trees ct,mr]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _base(modality: str, size: int, patient: int, date: str) -> object:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

    sop = CTImageStorage if modality == "CT" else MRImageStorage
    ds = Dataset()
    ds.SOPClassUID = sop
    ds.Modality = modality
    ds.PatientID = f"BENCH{patient:03d}"
    ds.PatientName = "Bench^Patient"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = date
    ds.StudyTime = "101500"
    ds.SeriesDescription = "AXIAL 1.0" if modality == "CT" else "T1 TSE"
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
    ds.RescaleIntercept = -1024 if modality == "CT" else 0
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def _private_block(ds: object, rng: random.Random) -> None:
    """About 40 KiB of private elements, as Philips and Siemens classic MR files carry."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds.add_new(0x20010010, "LO", "Philips Imaging DD 001")  # type: ignore[attr-defined]
    ds.add_new(0x20050010, "LO", "Philips MR Imaging DD 001")  # type: ignore[attr-defined]
    for n in range(0x10, 0xFF):
        ds.add_new(0x20011000 | n, "DS", f"{rng.random() * 100:.6f}")  # type: ignore[attr-defined]
        ds.add_new(0x20051000 | n, "LO", f"PARAM_{n}_{rng.getrandbits(40):x}")  # type: ignore[attr-defined]
    ds.add_new(0x00291010, "OB", bytes(rng.getrandbits(8) for _ in range(12 * 1024)))  # type: ignore[attr-defined]
    ds.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")  # type: ignore[attr-defined]
    items = []
    for n in range(40):
        item = Dataset()
        item.add_new(0x20050010, "LO", "Philips MR Imaging DD 001")
        for m in range(0x10, 0x60):
            item.add_new(0x20051000 | m, "DS", f"{n * m * 0.5:.3f}")
        items.append(item)
    ds.add_new(0x2005140F, "SQ", Sequence(items))  # type: ignore[attr-defined]


def write_tree(root: Path, *, kind: str, files: int, patients: int = 10) -> None:
    """Write ``files`` files: a folder per series, meaningless names, two studies a patient."""
    import pydicom
    from pydicom.uid import generate_uid

    rng = random.Random(0)
    size = 512 if kind == "ct" else 256
    pixels = np.random.default_rng(0).integers(0, 3000, size=(size, size), dtype=np.int16)
    series_count = patients * 2
    written = 0
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for s in range(series_count):
        ds = _base("CT" if kind == "ct" else "MR", size, s // 2,
                   ("20230110", "20230412")[s % 2])
        ds.PixelData = pixels.tobytes()  # type: ignore[attr-defined]
        if kind == "mr":
            _private_block(ds, rng)
        count = files // series_count if s < series_count - 1 else files - written
        folder = tmp / f"{rng.getrandbits(32):08X}" / f"{rng.getrandbits(32):08X}"
        folder.mkdir(parents=True)
        for k in range(count):
            uid = generate_uid()
            ds.SOPInstanceUID = uid  # type: ignore[attr-defined]
            ds.file_meta.MediaStorageSOPInstanceUID = uid  # type: ignore[attr-defined]
            ds.InstanceNumber = k + 1  # type: ignore[attr-defined]
            ds.ImagePositionPatient = [-90.0, -90.0, 100.0 + k * 1.0]  # type: ignore[attr-defined]
            pydicom.dcmwrite(folder / f"{rng.getrandbits(48):012x}", ds,  # type: ignore[arg-type]
                             enforce_file_format=True)
            written += 1
    tmp.rename(root)


def time_medseq(tree: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "medseq", "scan", "--json", str(tree)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - start


def time_dcm2niix(tree: Path, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    subprocess.run(["dcm2niix", "-b", "o", "-o", str(out), str(tree)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--root", type=Path, default=REPO / ".bench")
    parser.add_argument("--trees", default="ct,mr")
    args = parser.parse_args()
    if shutil.which("dcm2niix") is None:
        sys.exit("dcm2niix is not on PATH (pip install dcm2niix)")
    for kind in args.trees.split(","):
        tree = args.root / f"scan-{kind}-{args.files}"
        if not tree.exists():
            start = time.perf_counter()
            write_tree(tree, kind=kind, files=args.files)
            print(f"wrote {tree} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="medseq-bench-scan-") as tmp:
            out = Path(tmp) / "json"
            time_medseq(tree)  # warm the page cache for both
            time_dcm2niix(tree, out)
            ours: list[float] = []
            theirs: list[float] = []
            for _ in range(args.runs):
                ours.append(time_medseq(tree))
                theirs.append(time_dcm2niix(tree, out))
        mine, ref = statistics.median(ours), statistics.median(theirs)
        n = args.files
        print(f"{kind} tree, {n} files (median of {args.runs}, interleaved):")
        print(f"  medseq scan --json: {mine:.2f} s = {n / mine:,.0f} files/s")
        print(f"  dcm2niix -b o:      {ref:.2f} s = {n / ref:,.0f} files/s")
        print(f"  ratio (medseq files/s over dcm2niix files/s): {ref / mine:.2f} "
              "(target >= 1)")


if __name__ == "__main__":
    main()
