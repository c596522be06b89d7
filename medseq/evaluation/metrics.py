"""Patient-level metrics for a binary response classifier, with their uncertainty.

Functions over ``labels`` (0/1) and ``probabilities``; nothing here knows about run
directories. Where scikit-learn or scipy does the job they do it (ROC curve, Brier score, ranks,
calibration bins; scipy and scikit-learn are imported inside the functions that use them, so
importing this module stays cheap for training). What no library provides is here: the AUC's
95% CI by a stratified bootstrap (positives and negatives resampled separately, so every
resample has both classes), the ROC band, and the comparison of two AUCs on the same patients
by the DeLong test with the fast algorithm of Sun & Xu (IEEE Signal Processing Letters 2014).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

DEFAULT_BOOTSTRAP = 2000
"""Bootstrap resamples for confidence intervals."""
DEFAULT_SEED = 0


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts at a decision threshold (positive = responder)."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def sensitivity(self) -> float | None:
        """True positive rate; None without positives."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float | None:
        """True negative rate; None without negatives."""
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def balanced_accuracy(self) -> float | None:
        """Mean of sensitivity and specificity; None unless both classes occur."""
        sens, spec = self.sensitivity, self.specificity
        if sens is None or spec is None:
            return None
        return (sens + spec) / 2.0

    def as_dict(self) -> dict[str, int]:
        """JSON form."""
        return {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn}


@dataclass(frozen=True)
class Calibration:
    """Logistic recalibration of predicted probabilities, and the binned reliability curve.

    ``slope`` comes from ``logit P(y=1) = a + b * logit(p)`` (ideal 1; below 1 means the
    predictions are too extreme); ``intercept`` is calibration-in-the-large, ``a`` with the
    slope fixed at 1 (ideal 0; above 0 means the model under-predicts the event rate). Either
    is None when the fit does not exist (one class only, or perfectly separated data).
    """

    slope: float | None
    intercept: float | None
    bins: tuple[CalibrationBin, ...]


@dataclass(frozen=True)
class CalibrationBin:
    """One bin of the reliability curve."""

    lower: float
    upper: float
    mean_predicted: float
    observed_fraction: float
    count: int


@dataclass(frozen=True)
class DeLongResult:
    """DeLong test of two correlated AUCs measured on the same patients."""

    auc_a: float
    auc_b: float
    difference: float
    """``auc_a - auc_b``."""
    std_error: float
    z: float | None
    p_value: float | None
    """Two-sided; None when the difference has zero variance (identical rankings)."""


def as_labels(labels: ArrayLike) -> NDArray[np.int64]:
    """Validate 0/1 labels into an int array."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {y.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return y.astype(np.int64)


def as_scores(scores: ArrayLike, n: int) -> FloatArray:
    """Validate finite scores of length ``n`` into a float array."""
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (n,):
        raise ValueError(f"scores must have shape ({n},), got {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return s


def has_both_classes(labels: ArrayLike) -> bool:
    """Whether an AUC is defined: at least one positive and one negative."""
    y = as_labels(labels)
    return bool(y.any() and not y.all())


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n_pos * n_neg), ties count one half)."""
    y = as_labels(labels)
    s = as_scores(scores, y.size)
    pos, neg = s[y == 1], np.sort(s[y == 0])
    if pos.size == 0 or neg.size == 0:
        raise ValueError("AUC needs at least one positive and one negative label")
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (pos.size * neg.size))


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    from sklearn.metrics import roc_curve as sk_roc_curve

    y = as_labels(labels)
    s = as_scores(scores, y.size)
    if not has_both_classes(y):
        raise ValueError("ROC curve needs at least one positive and one negative label")
    # One point per distinct score, so tied scores move the curve diagonally.
    fpr, tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    return fpr.astype(np.float64), tpr.astype(np.float64)


def bootstrap_auc_ci(
    labels: ArrayLike,
    scores: ArrayLike,
    *,
    n_resamples: int = DEFAULT_BOOTSTRAP,
    level: float = 0.95,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """Percentile CI of the AUC from a bootstrap stratified by class."""
    aucs = _bootstrap_aucs(labels, scores, n_resamples=n_resamples, seed=seed)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(aucs, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_roc_band(
    labels: ArrayLike,
    scores: ArrayLike,
    *,
    fpr_grid: ArrayLike | None = None,
    n_resamples: int = DEFAULT_BOOTSTRAP,
    level: float = 0.95,
    seed: int = DEFAULT_SEED,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Pointwise percentile band of the TPR over a grid of FPRs: ``(fpr_grid, lower, upper)``."""
    y = as_labels(labels)
    s = as_scores(scores, y.size)
    grid = np.linspace(0.0, 1.0, 101) if fpr_grid is None else np.asarray(fpr_grid, float)
    rng = np.random.default_rng(seed)
    pos, neg = s[y == 1], s[y == 0]
    if pos.size == 0 or neg.size == 0:
        raise ValueError("ROC band needs at least one positive and one negative label")
    # The ROC's upper envelope at FPR g admits at most k = floor(g * n_neg) negatives, so its
    # TPR is the share of positives scoring above the (k+1)-th highest negative.
    k = np.floor(grid * neg.size + 1e-9).astype(int)
    tprs = np.empty((n_resamples, grid.size))
    chunk = max(1, 2_000_000 // max(grid.size * pos.size, 1))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        p = pos[rng.integers(0, pos.size, size=(stop - start, pos.size))]
        n = -np.sort(-neg[rng.integers(0, neg.size, size=(stop - start, neg.size))], axis=1)
        thr = np.where(k < neg.size, n[:, np.minimum(k, neg.size - 1)], -np.inf)
        tprs[start:stop] = (p[:, None, :] > thr[:, :, None]).mean(axis=2)
    alpha = (1.0 - level) / 2.0
    lower, upper = np.quantile(tprs, [alpha, 1.0 - alpha], axis=0)
    return grid, lower, upper


def delong_test(labels: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike) -> DeLongResult:
    """Two-sided DeLong test that two scores on the same patients have equal AUC."""
    y = as_labels(labels)
    a = as_scores(scores_a, y.size)
    b = as_scores(scores_b, y.size)
    aucs, cov = delong_covariance(y, np.vstack([a, b]))
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if var <= 1e-15:
        return DeLongResult(float(aucs[0]), float(aucs[1]), diff, 0.0, None, None)
    se = math.sqrt(var)
    z = diff / se
    p_value = math.erfc(abs(z) / math.sqrt(2))
    return DeLongResult(float(aucs[0]), float(aucs[1]), diff, se, z, p_value)


def delong_covariance(labels: ArrayLike, scores: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """AUCs of each row of ``scores`` [k, n] and their DeLong covariance matrix [k, k].

    Fast DeLong (Sun & Xu 2014): the structural components come from midranks (tied values
    share the mean of their ranks) within the positives, within the negatives and over everyone,
    so the cost is O(k n log n) instead of the O(k m n) of the pairwise definition.
    """
    from scipy.stats import rankdata

    y = as_labels(labels)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if s.shape[1] != y.size:
        raise ValueError(f"scores must have shape (k, {y.size}), got {s.shape}")
    pos, neg = s[:, y == 1], s[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m == 0 or n == 0:
        raise ValueError("DeLong needs at least one positive and one negative label")
    k = s.shape[0]
    tx = rankdata(pos, method="average", axis=1)
    ty = rankdata(neg, method="average", axis=1)
    tz = rankdata(np.hstack([pos, neg]), method="average", axis=1)
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v01 = (tz[:, :m] - tx) / n  # per positive: fraction of negatives it outranks
    v10 = 1.0 - (tz[:, m:] - ty) / m  # per negative: fraction of positives above it
    sx = np.atleast_2d(np.cov(v01)) if m > 1 else np.zeros((k, k))
    sy = np.atleast_2d(np.cov(v10)) if n > 1 else np.zeros((k, k))
    return aucs, sx / m + sy / n


def confusion_matrix(
    labels: ArrayLike, probabilities: ArrayLike, *, threshold: float = 0.5
) -> ConfusionMatrix:
    """Counts with ``probability >= threshold`` called a responder."""
    y = as_labels(labels)
    pred = as_scores(probabilities, y.size) >= threshold
    return ConfusionMatrix(
        tp=int(np.sum(pred & (y == 1))),
        fp=int(np.sum(pred & (y == 0))),
        tn=int(np.sum(~pred & (y == 0))),
        fn=int(np.sum(~pred & (y == 1))),
    )


def brier_score(labels: ArrayLike, probabilities: ArrayLike) -> float:
    """Mean squared error of the probabilities (0 perfect; 0.25 for a constant 0.5)."""
    from sklearn.metrics import brier_score_loss

    y = as_labels(labels)
    p = as_scores(probabilities, y.size)
    if y.size == 0:
        raise ValueError("Brier score of no patients")
    return float(brier_score_loss(y, p, labels=[0, 1]))


def calibration(
    labels: ArrayLike, probabilities: ArrayLike, *, n_bins: int = 10
) -> Calibration:
    """Calibration slope and intercept by logistic recalibration, plus a binned curve."""
    y = as_labels(labels)
    p = as_scores(probabilities, y.size)
    lp = _logit(p)
    slope: float | None = None
    intercept: float | None = None
    if has_both_classes(y):
        fit = _logistic_fit(lp, y.astype(np.float64), offset=None)
        slope = fit[1] if fit is not None else None
        fixed = _logistic_fit(None, y.astype(np.float64), offset=lp)
        intercept = fixed[0] if fixed is not None else None
    bins = calibration_curve(y, p, n_bins=n_bins)
    return Calibration(slope=slope, intercept=intercept, bins=bins)


def calibration_curve(
    labels: ArrayLike, probabilities: ArrayLike, *, n_bins: int = 10
) -> tuple[CalibrationBin, ...]:
    """Observed responder fraction against mean predicted probability in equal-width bins.

    Bins are ``[lower, upper)``, the last one closed; empty bins are left out.
    """
    from scipy.stats import binned_statistic

    y = as_labels(labels)
    p = as_scores(probabilities, y.size)
    if y.size == 0:
        return ()
    means = binned_statistic(p, [p, y.astype(np.float64)], statistic="mean", bins=n_bins,
                             range=(0.0, 1.0))
    counts = np.bincount(means.binnumber - 1, minlength=n_bins)
    edges = means.bin_edges
    return tuple(
        CalibrationBin(lower=float(edges[b]), upper=float(edges[b + 1]),
                       mean_predicted=float(means.statistic[0][b]),
                       observed_fraction=float(means.statistic[1][b]), count=int(counts[b]))
        for b in range(n_bins) if counts[b]
    )


def mean_absolute_error(observed: Sequence[float], predicted: Sequence[float]) -> float | None:
    """Mean |predicted - observed| over pairs where both are finite; None if there are none."""
    o = np.asarray(observed, dtype=np.float64)
    f = np.asarray(predicted, dtype=np.float64)
    if o.shape != f.shape:
        raise ValueError(f"observed and predicted differ in shape: {o.shape} vs {f.shape}")
    ok = np.isfinite(o) & np.isfinite(f)
    if not ok.any():
        return None
    return float(np.mean(np.abs(f[ok] - o[ok])))


def _bootstrap_aucs(
    labels: ArrayLike, scores: ArrayLike, *, n_resamples: int, seed: int
) -> FloatArray:
    y = as_labels(labels)
    s = as_scores(scores, y.size)
    pos, neg = s[y == 1], s[y == 0]
    if pos.size == 0 or neg.size == 0:
        raise ValueError("bootstrap AUC needs at least one positive and one negative label")
    rng = np.random.default_rng(seed)
    pi = rng.integers(0, pos.size, size=(n_resamples, pos.size))
    ni = rng.integers(0, neg.size, size=(n_resamples, neg.size))
    p = pos[pi][:, :, None]
    n = neg[ni][:, None, :]
    # Pairwise comparison is vectorised; cohorts here are hundreds of patients, not millions.
    if pos.size * neg.size <= 250_000:
        wins = (p > n).sum(axis=(1, 2)) + 0.5 * (p == n).sum(axis=(1, 2))
        return np.asarray(wins / (pos.size * neg.size), dtype=np.float64)
    ones = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    return np.array([roc_auc(ones, np.r_[pos[a], neg[b]]) for a, b in zip(pi, ni, strict=True)])


def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, 1e-6, 1.0 - 1e-6)
    return np.asarray(np.log(q / (1.0 - q)), dtype=np.float64)


def _logistic_fit(
    x: FloatArray | None, y: FloatArray, *, offset: FloatArray | None
) -> tuple[float, float] | None:
    """Unpenalised logistic regression by Newton-Raphson: ``(intercept, slope)``.

    With ``x`` None only the intercept is fitted (slope reported as 1.0). Returns None when the
    fit diverges, which happens with perfectly separated data. Not scikit-learn: calibration-in-
    the-large needs a fixed offset (the slope held at 1), which its LogisticRegression lacks, and
    separation must give None rather than a huge coefficient. (The size-only baseline, an
    ordinary penalised fit, is scikit-learn's: ``medseq.evaluation.baseline``.)
    """
    n = y.size
    design = np.ones((n, 1)) if x is None else np.column_stack([np.ones(n), x])
    off = np.zeros(n) if offset is None else offset
    beta = np.zeros(design.shape[1])
    for _ in range(100):
        eta = design @ beta + off
        mu = 1.0 / (1.0 + np.exp(-np.clip(eta, -500.0, 500.0)))
        w = np.maximum(mu * (1.0 - mu), 1e-12)
        grad = design.T @ (y - mu)
        hess = design.T @ (design * w[:, None])
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            return None
        beta = beta + step
        if not np.isfinite(beta).all() or np.abs(beta).max() > 1e3:
            return None
        if np.abs(step).max() < 1e-10:
            return (float(beta[0]), float(beta[1]) if beta.size > 1 else 1.0)
    return None


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None
