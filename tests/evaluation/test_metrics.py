"""Metrics against brute-force definitions and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from medseq.evaluation import metrics


def _pairwise_delong(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) from its definition: O(m n) structural components."""
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]

    def psi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])

    k = scores.shape[0]
    v10 = np.array([psi(pos[r], neg[r]).mean(axis=1) for r in range(k)])  # per positive
    v01 = np.array([psi(pos[r], neg[r]).mean(axis=0) for r in range(k)])  # per negative
    aucs = v10.mean(axis=1)
    s10 = np.cov(v10)
    s01 = np.cov(v01)
    return aucs, s10 / m + s01 / n


def _cohort(seed: int, n: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    a = y * 1.0 + rng.normal(0, 1.0, n)
    b = np.round(y * 0.5 + rng.normal(0, 1.0, n), 1)  # rounded: ties exercise midranks
    return y, a, b


def test_auc_matches_sklearn_and_mann_whitney_with_ties() -> None:
    y, _, b = _cohort(1)
    assert metrics.roc_auc(y, b) == pytest.approx(roc_auc_score(y, b), abs=1e-12)


def test_auc_rejects_one_class_and_bad_labels() -> None:
    with pytest.raises(ValueError, match="positive and one negative"):
        metrics.roc_auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="0 or 1"):
        metrics.roc_auc([0, 2], [0.1, 0.2])


def test_fast_delong_equals_pairwise_definition() -> None:
    for seed in range(5):
        y, a, b = _cohort(seed)
        fast_aucs, fast_cov = metrics.delong_covariance(y, np.vstack([a, b]))
        slow_aucs, slow_cov = _pairwise_delong(y, np.vstack([a, b]))
        np.testing.assert_allclose(fast_aucs, slow_aucs, atol=1e-12)
        np.testing.assert_allclose(fast_cov, slow_cov, atol=1e-12)


def test_delong_worked_example() -> None:
    # Hand-computed: positives {0.9, 0.8, 0.4}, negatives {0.7, 0.3}; score B ranks perfectly.
    y = [1, 1, 1, 0, 0]
    a = [0.9, 0.8, 0.4, 0.7, 0.3]
    b = [0.9, 0.8, 0.6, 0.5, 0.3]
    res = metrics.delong_test(y, a, b)
    assert res.auc_a == pytest.approx(5 / 6)
    assert res.auc_b == pytest.approx(1.0)
    # V10(A) = (1, 1, 1/2), V01(A) = (2/3, 1); B has zero variance.
    var = np.var([1, 1, 0.5], ddof=1) / 3 + np.var([2 / 3, 1], ddof=1) / 2
    assert res.std_error == pytest.approx(math.sqrt(var))
    z = (5 / 6 - 1) / math.sqrt(var)
    assert res.z == pytest.approx(z)
    assert res.p_value == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))


def test_delong_identical_scores_has_no_p_value() -> None:
    y, a, _ = _cohort(3)
    res = metrics.delong_test(y, a, a)
    assert res.difference == 0.0
    assert res.p_value is None


def test_delong_separates_a_strong_from_a_useless_score() -> None:
    rng = np.random.default_rng(7)
    y = np.r_[np.ones(100), np.zeros(100)].astype(int)
    strong = y * 3.0 + rng.normal(0, 1, 200)
    useless = rng.normal(0, 1, 200)
    assert metrics.delong_test(y, strong, useless).p_value < 1e-6


def test_bootstrap_ci_is_seeded_and_brackets_the_auc() -> None:
    y, a, _ = _cohort(4, n=80)
    ci1 = metrics.bootstrap_auc_ci(y, a, n_resamples=500, seed=11)
    ci2 = metrics.bootstrap_auc_ci(y, a, n_resamples=500, seed=11)
    assert ci1 == ci2
    auc = metrics.roc_auc(y, a)
    assert ci1[0] < auc < ci1[1]
    assert 0.05 < ci1[1] - ci1[0] < 0.4


def test_roc_curve_matches_sklearn() -> None:
    y, _, b = _cohort(5)
    fpr, tpr = metrics.roc_curve(y, b)
    sk_fpr, sk_tpr, _ = sk_roc_curve(y, b, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert np.trapezoid(tpr, fpr) == pytest.approx(metrics.roc_auc(y, b))


def test_roc_band_contains_the_curve_mostly() -> None:
    y, a, _ = _cohort(6, n=80)
    grid, lo, hi = metrics.bootstrap_roc_band(y, a, n_resamples=300, seed=0)
    assert grid.shape == lo.shape == hi.shape == (101,)
    assert (lo <= hi + 1e-12).all()
    assert hi[-1] == pytest.approx(1.0)


def test_confusion_matrix_and_rates() -> None:
    cm = metrics.confusion_matrix([1, 1, 0, 0, 1], [0.9, 0.2, 0.6, 0.1, 0.5])
    assert cm.as_dict() == {"tp": 2, "fp": 1, "tn": 1, "fn": 1}
    assert cm.sensitivity == pytest.approx(2 / 3)
    assert cm.specificity == pytest.approx(1 / 2)
    assert cm.balanced_accuracy == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert metrics.confusion_matrix([1, 1], [0.9, 0.1]).specificity is None


def test_brier_score() -> None:
    assert metrics.brier_score([1, 0], [0.5, 0.5]) == pytest.approx(0.25)
    assert metrics.brier_score([1, 0], [1.0, 0.0]) == 0.0


def test_calibration_slope_matches_unpenalised_logistic_regression() -> None:
    rng = np.random.default_rng(8)
    true_lp = rng.normal(0, 1.5, 400)
    y = (rng.random(400) < 1 / (1 + np.exp(-true_lp))).astype(int)
    p = 1 / (1 + np.exp(-2.0 * true_lp))  # over-confident: slope ~ 0.5
    cal = metrics.calibration(y, p)
    lp = np.log(p / (1 - p))
    ref = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(lp[:, None], y)
    assert cal.slope == pytest.approx(ref.coef_[0, 0], rel=1e-5)
    assert 0.35 < cal.slope < 0.7
    assert cal.intercept is not None
    assert abs(cal.intercept) < 0.5
    assert sum(b.count for b in cal.bins) == 400


def test_calibration_intercept_is_calibration_in_the_large() -> None:
    y = np.r_[np.ones(30), np.zeros(70)].astype(int)
    p = np.full(100, 0.3)
    cal = metrics.calibration(y, p)
    assert cal.intercept == pytest.approx(0.0, abs=1e-8)
    cal_low = metrics.calibration(y, np.full(100, 0.1))
    assert cal_low.intercept == pytest.approx(math.log(0.3 / 0.7) - math.log(0.1 / 0.9), abs=1e-6)


def test_calibration_of_separated_data_has_no_slope() -> None:
    cal = metrics.calibration([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert cal.slope is None
    assert len(cal.bins) == 4


def test_calibration_curve_bins() -> None:
    bins = metrics.calibration_curve([0, 1, 1, 0], [0.05, 0.05, 0.95, 1.0], n_bins=10)
    assert [(b.count, b.observed_fraction) for b in bins] == [(2, 0.5), (2, 0.5)]
    assert bins[-1].upper == 1.0


def test_mean_absolute_error_skips_missing() -> None:
    assert metrics.mean_absolute_error([1.0, 2.0, float("nan")], [2.0, 2.0, 5.0]) == 0.5
    assert metrics.mean_absolute_error([float("nan")], [1.0]) is None


def test_roc_band_of_one_resample_set_is_the_envelope_of_the_roc() -> None:
    # With a single resample the band collapses to one curve: check it against roc_curve.
    y, a, _ = _cohort(9, n=40)
    grid = np.linspace(0, 1, 41)
    rng = np.random.default_rng(3)
    pos, neg = a[y == 1], a[y == 0]
    p = pos[rng.integers(0, pos.size, size=(1, pos.size))][0]
    n = neg[rng.integers(0, neg.size, size=(1, neg.size))][0]
    fpr, tpr = metrics.roc_curve(np.r_[np.ones(p.size), np.zeros(n.size)].astype(int), np.r_[p, n])
    expected = [tpr[fpr <= g + 1e-12].max() for g in grid]
    _, lo, hi = metrics.bootstrap_roc_band(y, a, fpr_grid=grid, n_resamples=1, seed=3)
    np.testing.assert_allclose(lo, expected)
    np.testing.assert_allclose(hi, expected)
