"""The classical feature baseline against scikit-learn's own pipeline, fold by fold."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medseq.evaluation.feature_baseline import (
    common_feature_names,
    fit_feature_model,
    out_of_fold_feature_model,
)


def _cohort(n: int = 30) -> tuple[dict, dict, dict, tuple[str, ...]]:
    rng = np.random.default_rng(4)
    names = ("a_hu", "b_ratio", "c_count")
    features, labels, folds = {}, {}, {}
    for i in range(n):
        pid = f"p{i:02d}"
        y = i % 2
        row = {"a_hu": float(-5 * y + rng.normal(0, 3)), "b_ratio": float(rng.normal(y, 1)),
               "c_count": float(i % 3)}
        if i % 5 == 0:
            row["b_ratio"] = math.nan  # missing: imputed with the training median
        features[pid], labels[pid], folds[pid] = row, y, i % 3
    return features, labels, folds, names


def test_out_of_fold_equals_sklearn_impute_scale_logistic_pipeline() -> None:
    features, labels, folds, names = _cohort()
    probs, scores, models = out_of_fold_feature_model(features, labels, folds, names)
    ids = sorted(features)
    x = np.array([[features[i][n] for n in names] for i in ids])
    y = np.array([labels[i] for i in ids])
    f = np.array([folds[i] for i in ids])
    for fold in (0, 1, 2):
        pipe = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                             LogisticRegression(C=1.0, max_iter=1000))
        pipe.fit(x[f != fold], y[f != fold])
        expected = pipe.predict_proba(x[f == fold])[:, 1]
        got = [probs[i] for i, k in zip(ids, f, strict=True) if k == fold]
        np.testing.assert_allclose(got, expected, atol=1e-9)
        assert models[fold].n_train == int((f != fold).sum())
        assert set(models[fold].coefficients) == set(names)
    assert all(math.isclose(1 / (1 + math.exp(-scores[i])), probs[i]) for i in ids)
    # the informative feature carries the weight, with the sign of its effect
    assert models[0].coefficients["a_hu"] < -0.5


def test_one_class_training_part_predicts_its_rate_and_an_all_missing_feature_is_zero() -> None:
    model = fit_feature_model([{"a": 1.0, "b": math.nan}, {"a": 2.0, "b": math.nan}], [1, 1],
                              ["a", "b"])
    assert model.coefs == (0.0, 0.0)
    assert model.predict([{"a": 5.0, "b": 1.0}])[0] == pytest.approx(2.5 / 3)
    assert model.medians == (1.5, 0.0)


def test_common_feature_names_are_those_every_line_carries_sorted() -> None:
    assert common_feature_names([{"b": 1.0, "a": 2.0, "c": 0.0}, {"a": 1.0, "b": 3.0}]) == (
        "a", "b")
    assert common_feature_names([{"a": 1.0}, None]) == ()
    assert common_feature_names([]) == ()
