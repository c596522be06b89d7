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

from cohort_key import pin_key  # noqa: E402  (benchmarks/, first on sys.path)
from machine import cpu_kernels  # noqa: E402

from medseq.contracts.evaluation import Comparison  # noqa: E402
from medseq.evaluation.evaluate import evaluate_run  # noqa: E402
from medseq.evaluation.verdict import FEATURE_MODEL, MODEL  # noqa: E402
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
          f"(per run: {', '.join(f'{w:.0f}' for w in walls)} s; CPU kernels {cpu_kernels()}: "
          "weights differ between kinds)", file=sys.stderr)
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
        pin_key(cache, f"early prediction {args.size} seed {args.cohort_seed} "
                       f"{args.generate} patients")
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
    pooled, ref = model.pooled, reference.pooled
    named = {(c.first, c.second): c for c in pooled.comparisons}
    feature = pooled.feature_model
    versus_feature = named.get((MODEL, FEATURE_MODEL))
    persistence = pooled.forecast.persistence
    task = model.task
    return {
        "seed": seed,
        "patients": model.n_patients,
        "responders": model.n_responders,
        "determined": task.n_determined if task else None,
        "label_kind": task.label_kind if task else None,
        "model": _auc(pooled.model.auc, pooled.model.auc_ci),
        "size_only": _auc(pooled.baseline.auc, pooled.baseline.auc_ci),
        "feature_model": _auc(feature.auc, feature.auc_ci) if feature else None,
        "reference": _auc(ref.model.auc, ref.model.auc_ci),
        "model_vs_size_only": _diff(pooled.comparison),
        "model_vs_feature_model": _diff(versus_feature) if versus_feature else None,
        "reference_vs_size_only": _diff(ref.comparison),
        "same_patients": [p.patient_id for p in model.patients]
        == [p.patient_id for p in reference.patients],
        "forecast_mae_ml": pooled.forecast.mae_ml,
        "persistence_mae_ml": persistence.mae_ml if persistence else None,
        "forecast_p": persistence.p_value if persistence else None,
        "forecast_beats_persistence": persistence.beats if persistence else None,
    }


def _auc(value: float | None, ci: tuple[float, float] | None) -> dict[str, Any]:
    return {"auc": value, "ci": list(ci) if ci else None}


def _diff(comparison: Comparison) -> dict[str, Any]:
    return {"difference": comparison.auc_difference, "p": comparison.p_value}


def _table(rows: list[dict[str, Any]], cache: Path) -> str:
    first = rows[0]
    lines = [
        f"Early prediction, observe 2, label {first['label_kind']}: {first['patients']} "
        f"patients ({first['responders']} responders; {first['determined']} left out because "
        f"the first two scans already decide the label), {cache}",
        "",
        "| seed | model | size-only | feature model | seed reference | model - size-only "
        "(DeLong p) | model - feature model (p) | forecast MAE mL (persistence, p) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['seed']} | {_fmt(row['model'])} | {_fmt(row['size_only'])} | "
            f"{_fmt(row['feature_model'])} | {_fmt(row['reference'])} | "
            f"{_fmt_diff(row['model_vs_size_only'])} | "
            f"{_fmt_diff(row['model_vs_feature_model'])} | "
            f"{_num(row['forecast_mae_ml'], 2)} ({_num(row['persistence_mae_ml'], 2)}, "
            f"{_p(row['forecast_p'])}) |")
    for key, name in (("model", "model"), ("size_only", "size-only"),
                      ("feature_model", "feature model"), ("reference", "seed reference")):
        values = [row[key]["auc"] for row in rows if row[key] and row[key]["auc"] is not None]
        if values:
            lines.append(f"mean AUC over {len(values)} seeds, {name}: "
                         f"{statistics.fmean(values):.3f}")
    if not all(row["same_patients"] for row in rows):
        lines.append("WARNING: the model and the seed reference were scored on different "
                     "patients")
    return "\n".join(lines)


def _fmt(entry: dict[str, Any] | None) -> str:
    if not entry or entry["auc"] is None:
        return "n/a"
    ci = entry["ci"]
    return f"{entry['auc']:.3f} ({ci[0]:.3f}-{ci[1]:.3f})" if ci else f"{entry['auc']:.3f}"


def _fmt_diff(entry: dict[str, Any] | None) -> str:
    if not entry or entry["difference"] is None:
        return "n/a"
    return f"{entry['difference']:+.3f} ({_p(entry['p'])})"


def _p(value: float | None) -> str:
    if value is None:
        return "p n/a"
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


def _num(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _call(command: list[str], env: dict[str, str] | None = None) -> None:
    # This checkout's medseq, whatever is installed.
    env = {**(env or os.environ), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, env=env, check=False)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(command)}")


if __name__ == "__main__":
    main()
