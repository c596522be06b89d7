"""Benchmark: how learnable is the synthetic cohort? Size-only AUC against the hidden-cue ceiling.

For a cohort of ``--patients`` (default 200, ``medium``), reports the stratified 5-fold
cross-validated AUC (scikit-learn logistic regression, standardised features) of

- the size-only baseline: relative change of the total lesion volume between the first two scans
  (what medseq's baseline uses; target about 0.70-0.80);
- the hidden response cues themselves: each patient's (volume-weighted) rim-enhancement change and
  necrotic-core growth that the generator renders into the first follow-up (target >= 0.90);
- each of these plus the number of scans: the label is the best response over the whole follow-up,
  so a longer follow-up gives more chances to respond; a sequence model sees how many scans a
  patient has, so "cues + number of scans" is the ceiling for such a model.

Volumes and labels come from :func:`medseq.data.synthetic.simulate_cohort`, which rasterises and
measures every lesion mask on each scan's grid exactly as ``medseq sample-data`` does but does not
render or write the images (they are not needed for these features); numbers therefore equal those
of the written cohort with the same settings. Each AUC is the mean over ``--repeats`` shuffles of
the folds (their spread is printed too).

Usage:
    python benchmarks/sample_data_difficulty.py [--patients 200] [--size medium] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medseq.data.synthetic import simulate_cohort

SIZE_ONLY_TARGET = (0.70, 0.80)
CEILING_TARGET = 0.90


def relative_volume_change(record: dict[str, Any]) -> float:
    """(V1 - V0) / V0 of the total lesion volume between the first two scans."""
    v0 = record["timepoints"][0]["volume_total_ml"]
    v1 = record["timepoints"][1]["volume_total_ml"]
    return (v1 - v0) / v0


def cv_auc(x: np.ndarray, y: np.ndarray, *, repeats: int) -> tuple[float, float]:
    """Mean and standard deviation over shuffles of the 5-fold cross-validated AUC."""
    aucs = []
    for repeat in range(repeats):
        folds = StratifiedKFold(5, shuffle=True, random_state=repeat)
        model = make_pipeline(StandardScaler(), LogisticRegression())
        proba = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
        aucs.append(roc_auc_score(y, proba))
    return float(np.mean(aucs)), float(np.std(aucs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--size", default="medium", choices=("small", "medium", "large"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    start = time.perf_counter()
    records = simulate_cohort(patients=args.patients, size=args.size, seed=args.seed)
    elapsed = time.perf_counter() - start
    y = np.array([r["label"] for r in records])
    size_only = np.array([[relative_volume_change(r)] for r in records])
    cues = np.array(
        [[r["response_cues"]["rim_change_hu"], r["response_cues"]["necrosis_change"]]
         for r in records]
    )
    scans = np.array([[len(r["timepoints"])] for r in records], dtype=float)
    responses = Counter(r["best_overall_response"] for r in records)
    print(f"cohort: {args.patients} patients, size {args.size}, seed {args.seed} "
          f"(simulated and measured in {elapsed:.1f} s)")
    print(f"responders (best overall response CR/PR): {y.sum()} ({y.mean():.0%}); "
          f"best responses {dict(sorted(responses.items()))}")
    rows = [
        ("size-only (relative volume change t0->t1)", size_only),
        ("hidden response cues (ceiling)", cues),
        ("cues + size", np.hstack([cues, size_only])),
        ("size-only + number of scans", np.hstack([size_only, scans])),
        ("cues + number of scans (sequence-model ceiling)", np.hstack([cues, scans])),
    ]
    results = {}
    for name, x in rows:
        mean, sd = cv_auc(x, y, repeats=args.repeats)
        results[name] = mean
        print(f"AUC {name:<50} {mean:.3f} +- {sd:.3f}")
    size_auc = results[rows[0][0]]
    ceiling = results[rows[1][0]]
    low, high = SIZE_ONLY_TARGET
    print(f"size-only within target {low:.2f}-{high:.2f}: {low <= size_auc <= high}; "
          f"ceiling >= {CEILING_TARGET:.2f}: {ceiling >= CEILING_TARGET}; "
          f"headroom (ceiling / size-only) {ceiling / size_auc:.2f}")


if __name__ == "__main__":
    main()
