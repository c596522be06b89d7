"""Benchmark: ``medseq preprocess`` speed, where the time goes, and how fast crops read back.

1. Generates a synthetic cohort (default: 4 patients x 3 scans, size ``medium``, 192x192x96,
   half DICOM and half NIfTI) unless ``--cohort`` names one, and preprocesses it into fresh
   caches with 1 and with 2 workers: seconds per patient, and the share of the workers' time in
   reading, registration, resampling (volumes and crops) and writing.
   With ground truth (a generated cohort): the registration error at lesion centroids.
2. Reads one training epoch of crops (every patient's ``crops.npy``, in shuffled order, as a
   float32 batch) from the cache (memory-mapped ``.npy``) and, as alternatives, from compressed
   ``.npz`` copies, against the same crops held in memory. The ratio says whether the format
   keeps a training loop fed.
3. With ``--memory``: peak memory of one worker preprocessing a 512x512x400 CT pair (baseline
   plus one follow-up, uncompressed NIfTI), measured in a fresh process (``ru_maxrss``).

Usage:
    python benchmarks/preprocess.py [--patients 4] [--size medium] [--cohort DIR] [--memory]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def preprocess(cohort: Path, cache: Path, workers: int) -> dict:
    from medseq.contracts.cache import read_manifest
    from medseq.io.discover import discover
    from medseq.preprocess.config import PreprocessConfig
    from medseq.preprocess.runner import run_preprocess

    shutil.rmtree(cache, ignore_errors=True)
    start = time.perf_counter()
    summary = run_preprocess(discover(cohort), cache, config=PreprocessConfig(), workers=workers)
    wall = time.perf_counter() - start
    assert not summary.failed, summary.failed
    stages: dict[str, float] = {}
    for record in read_manifest(cache).patients.values():
        for stage, seconds in record.timings.items():
            if stage != "committed_at":
                stages[stage] = stages.get(stage, 0.0) + seconds
    return {"wall": wall, "patients": summary.processed, "timepoints": summary.timepoints,
            "stages": stages}


def registration_errors(cohort: Path, cache: Path) -> np.ndarray | None:
    """Distances (mm) between follow-up lesion centroids mapped to baseline and the truth."""
    from medseq.contracts.cache import read_manifest
    from medseq.preprocess.pseudonym import load_or_create_salt, pseudonym

    folder = cohort if cohort.is_dir() else cohort.parent
    truth_path = folder / "ground_truth.json"
    if not truth_path.is_file():
        return None
    key = load_or_create_salt(cache)
    manifest = read_manifest(cache)
    errors = []
    for patient in json.loads(truth_path.read_text())["patients"]:
        record = manifest.patients.get(pseudonym(patient["patient_id"], key))
        if record is None or record.status != "ok":
            continue
        for scan, timepoint in zip(patient["timepoints"], record.timepoints, strict=False):
            matrix = np.asarray(timepoint.transform_to_baseline)
            for lesion in scan["lesions"]:
                if timepoint.index and not lesion.get("new"):
                    here = np.array([*lesion["centroid_mm"], 1.0])
                    errors.append(float(np.linalg.norm(
                        (matrix @ here)[:3] - np.asarray(lesion["centroid_baseline_mm"]))))
    return np.asarray(errors)


def epoch_read(cache: Path, rounds: int = 5) -> dict[str, float]:
    from medseq.contracts.cache import read_manifest

    paths = [cache / p.crops for p in read_manifest(cache).ok_patients() if p.crops]
    in_memory = [np.load(p) for p in paths]
    npz_dir = cache.parent / (cache.name + "_npz")
    npz_dir.mkdir(exist_ok=True)
    npz = []
    for i, array in enumerate(in_memory):
        target = npz_dir / f"{i}.npz"
        np.savez_compressed(target, crops=array)
        npz.append(target)
    sizes = {"npy_MiB": sum(p.stat().st_size for p in paths) / 2**20,
             "npz_MiB": sum(p.stat().st_size for p in npz) / 2**20}

    def run(load) -> float:
        times = []
        for _ in range(rounds):
            order = list(range(len(paths)))
            random.shuffle(order)
            start = time.perf_counter()
            for i in order:
                batch = np.asarray(load(i), dtype=np.float32)  # what a Dataset hands to torch
                batch.sum()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    result = {
        "memory_s": run(lambda i: in_memory[i]),
        "npy_mmap_s": run(lambda i: np.load(paths[i], mmap_mode="r")),
        "npz_s": run(lambda i: np.load(npz[i])["crops"]),
    }
    shutil.rmtree(npz_dir)
    return {**result, **sizes, "crops_files": len(paths)}


MEMORY_CHILD = r"""
import resource, sys, json
from pathlib import Path
from medseq.io.discover import discover
from medseq.preprocess.config import PreprocessConfig
from medseq.preprocess.runner import run_preprocess
cohort, cache = Path(sys.argv[1]), Path(sys.argv[2])
summary = run_preprocess(discover(cohort), cache, config=PreprocessConfig())
print(json.dumps({"maxrss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": summary.seconds, "failed": len(summary.failed)}))
"""


def large_ct_memory(work: Path) -> dict:
    """Peak RSS of one process preprocessing a 512x512x400 CT baseline + follow-up."""
    import nibabel as nib

    shape, spacing = (512, 512, 400), (0.7, 0.7, 1.0)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -np.asarray(shape) * spacing / 2
    i, j = np.ogrid[:512, :512]
    body = ((i - 256) / 200.0) ** 2 + ((j - 256) / 150.0) ** 2 <= 1
    lesion_mask = np.zeros(shape, np.uint8)
    lesion_mask[300:330, 250:280, 190:215] = 1
    for t, shift in enumerate((0, 6)):
        slab = np.where(body, 40, -1000).astype(np.int16)
        image = np.repeat(slab[:, :, None], shape[2], axis=2)
        image[200:230, 180:260, :] = 400  # a bone-like bar for the registration to lock on
        image[lesion_mask > 0] = 90
        image = np.roll(image, shift, axis=0)
        folder = work / "big" / f"P1/2020-0{t + 1}-01"
        folder.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(image, affine), folder / "image.nii")
        nib.save(nib.Nifti1Image(np.roll(lesion_mask, shift, axis=0), affine),
                 folder / "mask.nii")
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(work / "big"),
                          str(work / "big_cache")], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--size", default="medium", choices=("small", "medium", "large"))
    parser.add_argument("--cohort", type=Path, help="an existing cohort (folder or manifest)")
    parser.add_argument("--memory", action="store_true", help="also measure a 512x512x400 CT")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="medseq-bench-preprocess-"))
    try:
        cohort = args.cohort
        if cohort is None:
            from medseq.data.synthetic.cohort import generate_cohort

            start = time.perf_counter()
            generate_cohort(work / "cohort", patients=args.patients, timepoints=(3, 3),
                            fmt="both", size=args.size, seed=7)
            cohort = work / "cohort" / "manifest.csv"
            print(f"generated {args.patients} {args.size} patients in "
                  f"{time.perf_counter() - start:.1f} s")
        results = {}
        for workers in (1, 2):
            result = preprocess(cohort, work / f"cache{workers}", workers)
            results[workers] = result
            per_patient = result["wall"] / max(1, result["patients"])
            print(f"workers={workers}: {result['patients']} patients, {result['timepoints']} "
                  f"scans in {result['wall']:.1f} s = {per_patient:.2f} s per patient")
        errors = registration_errors(cohort, work / "cache1")
        if errors is not None and errors.size:
            print(f"registration error at {errors.size} follow-up lesion centroids: median "
                  f"{np.median(errors):.2f} mm, 95th percentile {np.percentile(errors, 95):.2f} "
                  f"mm, max {errors.max():.2f} mm (targets: <= 1 mm, <= 2 mm)")
        stages = results[1]["stages"]
        total = sum(stages.values()) or 1.0
        print("time shares (1 worker): " + ", ".join(
            f"{k} {v / total:.0%} ({v:.1f} s)" for k, v in sorted(stages.items())))
        print(f"speed-up with 2 workers: {results[1]['wall'] / results[2]['wall']:.2f}x")
        epoch = epoch_read(work / "cache1")
        print(f"one epoch of crops ({epoch['crops_files']} patients, {epoch['npy_MiB']:.1f} MiB "
              f".npy / {epoch['npz_MiB']:.1f} MiB .npz): in memory {epoch['memory_s'] * 1e3:.2f}"
              f" ms, .npy mmap {epoch['npy_mmap_s'] * 1e3:.2f} ms "
              f"(ratio {epoch['npy_mmap_s'] / epoch['memory_s']:.1f}), .npz "
              f"{epoch['npz_s'] * 1e3:.2f} ms (ratio {epoch['npz_s'] / epoch['memory_s']:.1f})")
        if args.memory:
            memory = large_ct_memory(work)
            print(f"512x512x400 CT, baseline + 1 follow-up, one process: peak "
                  f"{memory['maxrss_MiB']:.0f} MiB in {memory['seconds']:.1f} s")
        print(f"(this process: peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
              " MiB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
