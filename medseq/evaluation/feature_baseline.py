"""The classical feature baseline: a logistic regression on the measurements of the observed scans.

Where the size-only baseline reads one number (the relative burden change), this one reads every
classical measurement feature ``predictions.jsonl`` records per patient (burden and diameter
ratios, HU changes of the lesion, its rim and core, lesion count, growth per day...): what a
radiomics analyst would fit without any deep model. Its settings are fixed in advance and never
tuned on the evaluation folds: missing values imputed with the training median, features
standardised on the training patients, L2 penalty with ``C = 1.0``. Like the size-only baseline
it is refitted for every fold on the other folds' patients, so it is scored out-of-fold on
exactly the patients (and scans) the model is.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from medseq.evaluation.baseline import fold_partitions, sigmoid

C = 1.0
"""Inverse L2 strength of the logistic regression, fixed in advance (never tuned)."""

FeatureRow = Mapping[str, float | None]
"""One patient's features by name; a missing or non-finite value is imputed."""


@dataclass(frozen=True)
class FeatureModel:
    """A fitted feature logistic regression: ``p = sigmoid(intercept + sum coef * z)``, where
    ``z = (x - mean) / scale`` after a missing ``x`` is replaced by the training median."""

    names: tuple[str, ...]
    medians: tuple[float, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    intercept: float
    coefs: tuple[float, ...]
    """On the standardised features, in the order of ``names``."""
    n_train: int

    @property
    def coefficients(self) -> dict[str, float]:
        """Standardised coefficient by feature name."""
        return dict(zip(self.names, self.coefs, strict=True))

    def score(self, rows: Sequence[FeatureRow]) -> list[float]:
        """The linear predictor (log-odds) of each row."""
        if not rows:
            return []
        z = (_impute(_matrix(rows, self.names), np.asarray(self.medians))
             - np.asarray(self.means)) / np.asarray(self.scales)
        return [float(v) for v in self.intercept + z @ np.asarray(self.coefs, dtype=np.float64)]

    def predict(self, rows: Sequence[FeatureRow]) -> list[float]:
        """Responder (event) probability of each row."""
        return [sigmoid(s) for s in self.score(rows)]

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {"intercept": self.intercept, "coefficients": self.coefficients,
                "n_train": self.n_train}


def common_feature_names(rows: Sequence[FeatureRow | None]) -> tuple[str, ...]:
    """The feature names every row carries, sorted; none when a row has no features."""
    if not rows or any(r is None for r in rows):
        return ()
    names = set.intersection(*(set(r) for r in rows if r is not None))
    return tuple(sorted(names))


def fit_feature_model(rows: Sequence[FeatureRow], labels: Sequence[int],
                      names: Sequence[str]) -> FeatureModel:
    """Fit on ``rows`` (impute with their median, standardise, L2 logistic regression, C=1).

    A feature that is missing for every training patient is imputed as 0; one that is constant
    keeps scale 1 (its standardised value is 0). With one class only the model predicts that
    class's smoothed rate, as the size-only baseline does.
    """
    if not rows:
        raise ValueError("the feature baseline needs at least one training patient")
    if not names:
        raise ValueError("the feature baseline needs at least one feature")
    x = _matrix(rows, names)
    y = np.asarray(labels, dtype=np.int64)
    with warnings.catch_warnings():  # an all-missing column is imputed as 0 below
        warnings.simplefilter("ignore", RuntimeWarning)
        medians = np.nanmedian(x, axis=0)
    medians = np.where(np.isnan(medians), 0.0, medians)
    filled = _impute(x, medians)
    means = filled.mean(axis=0)
    scales = filled.std(axis=0)
    scales = np.where(scales > 0, scales, 1.0)
    z = (filled - means) / scales
    k = len(names)
    if y.min() == y.max():
        rate = (y.sum() + 0.5) / (y.size + 1.0)
        intercept, coefs = math.log(rate / (1 - rate)), np.zeros(k)
    else:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=C, max_iter=1000).fit(z, y)
        intercept, coefs = float(model.intercept_[0]), model.coef_[0]
    return FeatureModel(
        names=tuple(names), medians=_floats(medians), means=_floats(means),
        scales=_floats(scales), intercept=float(intercept), coefs=_floats(coefs),
        n_train=int(y.size),
    )


def out_of_fold_feature_model(
    features: Mapping[str, FeatureRow],
    labels: Mapping[str, int],
    folds: Mapping[str, int],
    names: Sequence[str],
) -> tuple[dict[str, float], dict[str, float], dict[int, FeatureModel]]:
    """One feature model per fold, fitted on the other folds' patients, scoring the held-out.

    The same patients and folds as :func:`medseq.evaluation.baseline.out_of_fold_baseline`.

    Returns:
        (patient id -> out-of-fold probability, patient id -> out-of-fold linear score,
        fold -> the model fitted without it).
    """
    probs: dict[str, float] = {}
    scores: dict[str, float] = {}
    models: dict[int, FeatureModel] = {}
    for fold, train, test in fold_partitions(features, labels, folds):
        if train:
            model = fit_feature_model([features[i] for i in train],
                                      [labels[i] for i in train], names)
        else:  # one fold only: nothing held in, so no information (never fit in-sample)
            k = len(names)
            model = FeatureModel(tuple(names), (0.0,) * k, (0.0,) * k, (1.0,) * k, 0.0,
                                 (0.0,) * k, 0)
        models[fold] = model
        for pid, s in zip(test, model.score([features[i] for i in test]), strict=True):
            scores[pid] = s
            probs[pid] = sigmoid(s)
    return probs, scores, models


def _matrix(rows: Sequence[FeatureRow], names: Sequence[str]) -> np.ndarray:
    """[patients, features] with NaN where a value is missing or not finite."""
    x = np.array([[_value(r.get(n)) for n in names] for r in rows], dtype=np.float64)
    return x.reshape(len(rows), len(names))


def _impute(x: np.ndarray, medians: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x), medians[None, :], x)


def _value(v: float | None) -> float:
    return float(v) if v is not None and math.isfinite(v) else math.nan


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)
