"""Cross-validated AUC of the response model beside the size-only baseline, with ablations.

Run from the repository root on a preprocessed cohort::

    python benchmarks/train_ablation.py CACHE OUT [--epochs 8] [--folds 5] [--only main,none]

Each variant is a full ``train_run`` into ``OUT/<name>`` with the same seed and splits; the
baseline is the logistic regression on the relative change of total lesion volume between the
first two scans, fitted out-of-fold on the same splits. Prints one Markdown table (AUC with a
bootstrap 95% CI, stratified by class). Variants that already finished in OUT are read back,
so an interrupted sweep continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medseq.evaluation.baseline import out_of_fold_baseline, relative_volume_change  # noqa: E402
from medseq.evaluation.metrics import bootstrap_auc_ci, roc_auc  # noqa: E402
from medseq.training.config import TrainConfig  # noqa: E402
from medseq.training.run import train_run  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "main": {"model": {"time": "concat"}, "observe": 3},
    "none": {"model": {"time": "none"}, "observe": 3},
    "decay": {"model": {"time": "decay"}, "observe": 3},
    "observe1": {"model": {"time": "concat"}, "observe": 1},
    "observe2": {"model": {"time": "concat"}, "observe": 2},
    "main_e30": {"model": {"time": "concat"}, "observe": 3, "epochs": 30,
                 "early_stopping": {"patience": 6}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--input-size", type=int, default=16)
    parser.add_argument("--only", default=",".join(VARIANTS))
    args = parser.parse_args()
    rows = []
    for name in args.only.split(","):
        run = args.out / name
        if not (run / "predictions.jsonl").is_file():
            config = _config(VARIANTS[name], args)
            began = time.perf_counter()
            train_run(args.cache, run, config, progress=True)
            (run / "wall_seconds.txt").write_text(f"{time.perf_counter() - began:.0f}\n")
        rows.append((name, _score(run)))
    print("| variant | patients | responders | model AUC (95% CI) | size-only baseline AUC (95% CI) |")
    print("|---|---|---|---|---|")
    for name, s in rows:
        print(f"| {name} | {s['n']} | {s['pos']} | {s['auc']:.3f} ({s['ci'][0]:.3f}-{s['ci'][1]:.3f}) "
              f"| {s['base_auc']:.3f} ({s['base_ci'][0]:.3f}-{s['base_ci'][1]:.3f}) |")
    print(json.dumps(dict(rows), indent=1))


def _config(variant: dict[str, Any], args: argparse.Namespace) -> TrainConfig:
    # The study of docs/results.md "Before early prediction": labels over all scans and the
    # architecture of that time (no measurements, first block normalised, loss-monitored
    # early stopping). Augmentation is today's (rotated masks are no longer re-binarised).
    base: dict[str, Any] = {
        "model": {"widths": [8, 16, 32], "embed": 32, "hidden": 32, "measurements": False,
                  "pool_stats": False, "first_block_norm": True},
        "label": {"kind": "overall"},
        "epochs": args.epochs, "folds": args.folds, "seed": args.seed,
        "input_size": args.input_size, "batch_size": 8, "final_model": False,
        "early_stopping": {"patience": 4, "monitor": "val_loss"},
        "augment": {"intensity_shift": 0.1, "intensity_scale": 0.1},
    }
    for key, value in variant.items():
        if isinstance(value, dict):
            base[key] = {**base.get(key, {}), **value}
        else:
            base[key] = value
    return TrainConfig.model_validate(base)


def _score(run: Path) -> dict[str, Any]:
    predictions = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    labels = {p["patient_id"]: int(p["responder"]) for p in predictions}
    folds = {p["patient_id"]: int(p["fold"]) for p in predictions}
    y = [labels[p["patient_id"]] for p in predictions]
    scores = [p["probability"] for p in predictions]
    features = {p["patient_id"]: f for p in predictions
                if (f := relative_volume_change(p["burden_ml"])) is not None}
    base, _ = out_of_fold_baseline(features, labels, folds)
    ids = sorted(base)
    by = [labels[i] for i in ids]
    bs = [base[i] for i in ids]
    wall = run / "wall_seconds.txt"
    return {
        "n": len(y), "pos": sum(y), "auc": roc_auc(y, scores), "ci": bootstrap_auc_ci(y, scores),
        "base_auc": roc_auc(by, bs), "base_ci": bootstrap_auc_ci(by, bs),
        "wall_seconds": float(wall.read_text()) if wall.is_file() else None,
    }


if __name__ == "__main__":
    main()
