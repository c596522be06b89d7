"""The next-scan burden forecast against persistence (the last observed burden carried forward).

A forecast that does not beat persistence tells nothing a ruler does not, so it is always
compared with it on the same (scan t -> scan t+1) pairs. Uncertainty is patient-level, since the
pairs of one patient are not independent: the MAE's CI comes from a bootstrap over patients, and
the paired test is the two-sided Wilcoxon signed-rank test of each patient's mean absolute error
of the model minus that of persistence.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from medseq.contracts.evaluation import ForecastMetrics, PersistenceRecord
from medseq.evaluation.rundir import ForecastPair

ALPHA = 0.05
"""The forecast beats persistence when its MAE is lower and the test's p is below this."""
TEST = "Wilcoxon signed-rank, per-patient mean absolute error"


def forecast_vs_persistence(
    pairs_by_patient: Sequence[Sequence[ForecastPair]],
    *,
    n_resamples: int,
    level: float = 0.95,
    seed: int = 0,
    alpha: float = ALPHA,
) -> ForecastMetrics:
    """MAE (mL) of the model's forecast and of persistence, their CIs, and the paired test."""
    patients = [list(p) for p in pairs_by_patient if p]
    n_pairs = sum(len(p) for p in patients)
    if not patients:
        return ForecastMetrics(mae_ml=None, n_pairs=0, n_patients=0,
                               persistence=PersistenceRecord(mae_ml=None, test=TEST))
    model_err = [np.abs([q.forecast - q.observed for q in p]) for p in patients]
    persist_err = [np.abs([q.previous - q.observed for q in p]) for p in patients]
    counts = np.array([len(p) for p in patients], dtype=np.float64)
    model_sum = np.array([e.sum() for e in model_err])
    persist_sum = np.array([e.sum() for e in persist_err])
    mae = float(model_sum.sum() / counts.sum())
    persistence_mae = float(persist_sum.sum() / counts.sum())
    p_value = wilcoxon_p(model_sum / counts - persist_sum / counts)
    beats = None if p_value is None else bool(mae < persistence_mae and p_value < alpha)
    ci_model, ci_persist = _bootstrap_mae(counts, model_sum, persist_sum,
                                          n_resamples=n_resamples, level=level, seed=seed)
    return ForecastMetrics(
        mae_ml=mae, n_pairs=n_pairs, mae_ci=ci_model, n_patients=len(patients),
        persistence=PersistenceRecord(mae_ml=persistence_mae, mae_ci=ci_persist, test=TEST,
                                      p_value=p_value, beats=beats),
    )


def wilcoxon_p(differences: Sequence[float] | np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p of paired differences; None when every one is zero."""
    from scipy.stats import wilcoxon

    d = np.asarray(differences, dtype=np.float64)
    if d.size == 0 or not np.any(d != 0):
        return None
    with warnings.catch_warnings():  # small samples: scipy warns about its approximation
        warnings.simplefilter("ignore")
        try:
            result = wilcoxon(d, alternative="two-sided")
        except ValueError:
            return None
    p = float(result.pvalue)
    return p if np.isfinite(p) else None


def _bootstrap_mae(
    counts: np.ndarray, model_sum: np.ndarray, persist_sum: np.ndarray, *,
    n_resamples: int, level: float, seed: int,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Percentile CIs of both MAEs over patients resampled with replacement (same resamples)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, counts.size, size=(n_resamples, counts.size))
    n = counts[idx].sum(axis=1)
    alpha = (1.0 - level) / 2.0
    out = []
    for sums in (model_sum, persist_sum):
        lo, hi = np.quantile(sums[idx].sum(axis=1) / n, [alpha, 1.0 - alpha])
        out.append((float(lo), float(hi)))
    return out[0], out[1]
