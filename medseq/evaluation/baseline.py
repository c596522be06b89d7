"""The size-only baseline every model is compared with.

A logistic regression on one number per patient: the relative change of the total lesion burden
between the first two scans, ``(v1 - v0) / v0``. It is what a radiologist would do without any
model, so a deep model that does not beat it adds nothing. It is fitted with the SAME
cross-validation folds as the model (from ``splits.json``), so both are scored out-of-fold on
exactly the same patients.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MIN_BASELINE_ML = 1e-3
"""Below this baseline burden (mL) the relative change is undefined; the feature is clipped."""
FEATURE_CLIP = 10.0
"""Relative changes are clipped to [-1, FEATURE_CLIP] so one tiny baseline cannot dominate."""


@dataclass(frozen=True)
class BaselineModel:
    """A fitted size-only logistic regression: ``p = sigmoid(intercept + coef * feature)``."""

    intercept: float
    coef: float
    n_train: int

    def predict(self, features: Sequence[float]) -> list[float]:
        """Responder probability for each relative volume change."""
        return [sigmoid(self.intercept + self.coef * f) for f in features]

    def as_dict(self) -> dict[str, float | int]:
        """JSON form."""
        return {"intercept": self.intercept, "coef": self.coef, "n_train": self.n_train}


def relative_volume_change(burden_ml: Sequence[float | None]) -> float | None:
    """``(v1 - v0) / v0`` from the first two scans' total lesion volume; None with fewer."""
    values = [v for v in burden_ml[:2] if v is not None and math.isfinite(v)]
    if len(burden_ml) < 2 or len(values) < 2:
        return None
    v0, v1 = values
    change = (v1 - v0) / max(v0, MIN_BASELINE_ML)
    return float(min(max(change, -1.0), FEATURE_CLIP))


def fit_baseline(features: Sequence[float], labels: Sequence[int]) -> BaselineModel:
    """Fit the logistic regression (scikit-learn, default L2 penalty, C=1 on the raw feature).

    With one class only the model predicts that class's smoothed rate, so a fold whose training
    part holds a single class still yields probabilities instead of an error.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if x.size == 0:
        raise ValueError("the size-only baseline needs at least one training patient")
    if y.min() == y.max():
        rate = (y.sum() + 0.5) / (y.size + 1.0)
        return BaselineModel(math.log(rate / (1 - rate)), 0.0, int(y.size))
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=1000).fit(x[:, None], y)
    return BaselineModel(float(model.intercept_[0]), float(model.coef_[0, 0]), int(y.size))


def out_of_fold_baseline(
    features: Mapping[str, float],
    labels: Mapping[str, int],
    folds: Mapping[str, int],
) -> tuple[dict[str, float], dict[int, BaselineModel]]:
    """Fit one baseline per fold on the other folds' patients and predict the held-out ones.

    Args:
        features: patient id -> relative volume change.
        labels: patient id -> 0/1 label.
        folds: patient id -> the fold that holds the patient out (from ``splits.json``).

    Returns:
        (patient id -> out-of-fold probability, fold -> the model fitted without it).
    """
    probs: dict[str, float] = {}
    models: dict[int, BaselineModel] = {}
    for fold, train, test in fold_partitions(features, labels, folds):
        if train:
            model = fit_baseline([features[i] for i in train], [labels[i] for i in train])
        else:  # one fold only: nothing held in, so no information (never fit in-sample)
            model = BaselineModel(0.0, 0.0, 0)
        models[fold] = model
        for pid, p in zip(test, model.predict([features[i] for i in test]), strict=True):
            probs[pid] = p
    return probs, models


def fold_partitions(
    features: Mapping[str, object], labels: Mapping[str, int], folds: Mapping[str, int],
) -> Iterator[tuple[int, list[str], list[str]]]:
    """``(fold, training ids, held-out ids)`` per fold, in fold order, over the patients that
    have features, a label and a fold: the split every out-of-fold baseline uses."""
    ids = sorted(set(features) & set(labels) & set(folds))
    for fold in sorted({folds[i] for i in ids}):
        yield fold, [i for i in ids if folds[i] != fold], [i for i in ids if folds[i] == fold]


def sigmoid(x: float) -> float:
    """The logistic function, without overflow."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)
