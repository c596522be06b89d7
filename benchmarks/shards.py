"""Benchmark: ``medseq preprocess`` as one task against two shards side by side, and the merge.

Generates a synthetic cohort (default 24 patients x 3 scans, size ``small``, half DICOM and half
NIfTI), then, each as a fresh ``python -m medseq`` process as a SLURM task would run it:

1. one task: ``preprocess IN -o CACHE`` (``--workers 1``);
2. two shards started together: ``--shard 1/2`` and ``--shard 2/2`` into one cache (the wall
   time until both have finished), then ``preprocess --merge`` (process, and the merge alone
   in this process on a second, idempotent run's inputs);

checks that the merged manifest equals the single task's (but for timings), and prints the
ratios and a plan for a 2,000-patient cohort from the measured per-patient cost.

Usage:
    nice python benchmarks/shards.py [--patients 24] [--size small]

Measured (2026-11-30, ``nice python benchmarks/shards.py``, the 2-core development machine
shared with other jobs: load average 4.8 during the run):

    process start (medseq --version)     0.44 s
    1 task                              60.48 s  (2.50 s/patient)
    2 shards side by side (wall)        64.82 s  (x0.93 faster than 1 task)
    merge, as a process                  1.22 s  (2.0% of 1 task)
    merge alone (in process)            0.020 s  (0.9 ms/patient)

On this machine two shards gained nothing: its two cores were already busy with other jobs, so
the shards only time-shared them (an idle 2-core machine would approach x2, as preprocess is
CPU-bound with one thread per patient). Sharding itself costs little: each shard starts one
process (0.4 s) and writes one plan; the merge reads every ``patient.json`` once (0.9 ms per
patient) and adds about 1 s of process start.

Paper plan for 2,000 patients (3 small scans each; scale by the per-patient cost of your own
scans, ``benchmarks/preprocess.py``): one task needs 2,000 x 2.5 s = 1.4 h. An array of 50
one-core tasks (40 patients each) needs 40 x 2.5 s + 0.5 s = about 2 min per task, so the
wall time is set by how many tasks the cluster runs at once (50 at once: about 2 min; 10 at
once: about 9 min). The dependent merge takes about 2 s (2,000 x 0.9 ms plus start). Real CT
(512 x 512 x 300) costs tens of seconds per patient: at 30 s, 2,000 patients are 17 h in one
task and 20 min per 40-patient task; plan memory at 1.2 GiB per worker (docs/preprocess.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def medseq(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "medseq", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def timed(*runs: list[str]) -> float:
    """Wall seconds until every one of the given medseq commands, started together, ends."""
    start = time.perf_counter()
    procs = [medseq(*args) for args in runs]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"medseq failed: {err.decode()[-500:]}")
    return time.perf_counter() - start


def content(cache: Path) -> dict:
    data = json.loads((cache / "manifest.json").read_text())
    for record in data["patients"].values():
        record.pop("timings", None)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=24)
    parser.add_argument("--size", default="small")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from medseq.data.synthetic.cohort import generate_cohort
    from medseq.preprocess.shards import merge_cache

    work = Path(tempfile.mkdtemp(prefix="medseq-bench-shards-"))
    try:
        generate_cohort(work / "cohort", patients=args.patients, timepoints=(3, 3),
                        fmt="both", size=args.size, seed=7)
        cohort = str(work / "cohort" / "manifest.csv")
        startup = timed(["--version"])
        one, two = work / "one", work / "two"
        single = timed(["preprocess", cohort, "-o", str(one)])
        two.mkdir()
        shutil.copy(one / "salt.key", two / "salt.key")  # same pseudonyms, comparable caches
        shards = timed(["preprocess", cohort, "-o", str(two), "--shard", "1/2"],
                       ["preprocess", cohort, "-o", str(two), "--shard", "2/2"])
        merge_process = timed(["preprocess", "--merge", str(two)])
        (two / "manifest.json").unlink()
        start = time.perf_counter()
        merge_cache(two)
        merge_alone = time.perf_counter() - start
        assert content(two) == content(one), "merged manifest differs from the single task's"
        n = args.patients
        per_patient = (single - startup) / n
        print(f"cohort: {n} {args.size} patients x 3 scans; {os.cpu_count()} CPUs")
        print(f"process start (medseq --version)   {startup:6.2f} s")
        print(f"1 task                             {single:6.2f} s  ({per_patient:.2f} s/patient)")
        print(f"2 shards side by side (wall)       {shards:6.2f} s  (x{single / shards:.2f} "
              "faster than 1 task)")
        print(f"merge, as a process                {merge_process:6.2f} s  "
              f"({merge_process / single:.1%} of 1 task)")
        print(f"merge alone (in process)           {merge_alone:6.3f} s  "
              f"({merge_alone / n * 1000:.1f} ms/patient)")
        plan = 2000
        print(f"plan for {plan} patients of this size: 1 task {plan * per_patient / 3600:.1f} h; "
              f"an array of 50 tasks (40 patients each, 1 core) "
              f"{(40 * per_patient + startup) / 60:.0f} min per task; merge about "
              f"{plan * merge_alone / n + startup:.0f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
