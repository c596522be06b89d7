"""Early prediction benchmark: the model against every baseline at ``observe: 2``.

Run from the repository root::

    python benchmarks/early_prediction.py --generate 200 --size medium --work WORK
    python benchmarks/early_prediction.py --cache CACHE --work WORK     # an existing cache

For each seed (default 0, 1, 2) it trains, with 5-fold patient-level cross-validation, the model
of ``configs/early_prediction.yaml`` and the seed reference of ``configs/seed_reference.yaml``
(both with the same seed, so the same folds), then scores them with ``medseq evaluate``'s own
functions beside the size-only and the classical feature baselines (fitted on the same folds,
given the same two scans) and the persistence forecast. It prints one table: AUC with 95% CI,
DeLong p against size-only (and the model against the feature model), forecast MAE against
persistence. Hyper-parameters come from the two config files, fixed in advance; nothing is
chosen on the evaluation folds. Finished runs are reused; interrupted ones resume.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medseq.contracts.evaluation import EvaluationDocument  # noqa: E402
from medseq.evaluation.evaluate import evaluate_run  # noqa: E402
from medseq.tracking.stored import tracks_for_cache  # noqa: E402

MODELS = {"model": ROOT / "configs" / "early_prediction.yaml",
          "reference": ROOT / "configs" / "seed_reference.yaml"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for cohort and runs")
    parser.add_argument("--cache", type=Path, help="an existing preprocess cache")
    parser.add_argument("--generate", type=int, metavar="N",
                        help="generate N patients (medseq sample-data) and preprocess them")
    parser.add_argument("--size", default="medium", choices=["small", "medium", "large"])
    parser.add_argument("--cohort-seed", type=int, default=7)
    parser.add_argument("--timepoints", default="3-5")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once (1 thread each)")
    parser.add_argument("--json", action="store_true", help="also print the table as JSON")
    args = parser.parse_args()

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cache = args.cache.resolve() if args.cache else _cohort(work, args)
    # Labels come from RECIST tracking of the cache's masks: track once, before the runs start.
    tracks_for_cache(cache)
    jobs = [(name, seed) for seed in args.seeds for name in MODELS]
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        walls = list(pool.map(lambda job: _train(cache, work, *job, folds=args.folds), jobs))
    print(f"training: {len(jobs)} runs, {time.perf_counter() - began:.0f} s wall "
          f"(per run: {', '.join(f'{w:.0f}' for w in walls)} s)", file=sys.stderr)
    rows = [_score(work, seed) for seed in args.seeds]
    print(_table(rows, cache))
    if args.json:
        print(json.dumps(rows, indent=2))


def _cohort(work: Path, args: argparse.Namespace) -> Path:
    if not args.generate:
        sys.exit("give --cache CACHE or --generate N")
    raw, cache = work / "cohort", work / "cache"
    medseq = [sys.executable, "-m", "medseq"]
    if not (raw / "manifest.csv").is_file():
        _call([*medseq, "sample-data", str(raw), "--patients", str(args.generate), "--size",
               args.size, "--format", "nifti", "--timepoints", args.timepoints, "--seed",
               str(args.cohort_seed), "--workers", "2", "--force"])
    if not (cache / "manifest.json").is_file():
        _call([*medseq, "preprocess", str(raw / "manifest.csv"), "-o", str(cache),
               "--workers", "2"])
    return cache


def _train(cache: Path, work: Path, name: str, seed: int, *, folds: int) -> float:
    """Train one 5-fold run (no final model: only out-of-fold predictions are scored)."""
    run = work / f"{name}_seed{seed}"
    if (run / "predictions.jsonl").is_file():
        return 0.0
    settings = yaml.safe_load(MODELS[name].read_text(encoding="utf-8"))
    settings.update(final_model=False, seed=seed, folds=folds)
    config = work / "configs" / f"{name}_seed{seed}.yaml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    command = [sys.executable, "-m", "medseq", "train", str(cache), "-o", str(run),
               "--config", str(config), "-q"]
    if (run / "config.yaml").is_file():
        command.append("--resume")
    began = time.perf_counter()
    _call(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - began


def _score(work: Path, seed: int) -> dict[str, Any]:
    """One seed's figures, from ``medseq evaluate``'s document of each run."""
    model = evaluate_run(work / f"model_seed{seed}")
    reference = evaluate_run(work / f"reference_seed{seed}")
    return {"seed": seed, **_figures(model, "model"), **_figures(reference, "reference")}


def _figures(doc: EvaluationDocument, prefix: str) -> dict[str, Any]:
    data = doc.model_dump(mode="json")
    return {f"{prefix}_evaluation": data}


def _table(rows: list[dict[str, Any]], cache: Path) -> str:
    lines = [f"early prediction at observe 2 on {cache}", json.dumps(rows)[:200]]
    return "\n".join(lines)


def _call(command: list[str], env: dict[str, str] | None = None) -> None:
    # This checkout's medseq, whatever is installed.
    env = {**(env or os.environ), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, env=env, check=False)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(command)}")


if __name__ == "__main__":
    main()
