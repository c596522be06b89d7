"""Discrimination of a risk score for time to progression with censoring.

Two measures, computed from their definitions (cohorts here are hundreds of patients, so the
O(n^2) pair matrices are cheap) and no survival library:

- Harrell's concordance index: among comparable pairs, the share the risk orders correctly.
- Uno's cumulative/dynamic AUC at a time ``t``: how well the risk separates patients who
  progressed by ``t`` from those still event-free after ``t``, with each case weighted by the
  inverse probability of remaining uncensored (Kaplan-Meier estimate of the censoring
  distribution), so censoring does not bias it (Uno et al. 2007; Hung & Chiang 2010).

Bootstrap CIs resample patients with replacement, seeded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Survival:
    """Validated arrays of one cohort: follow-up days, event flags, risk scores."""

    time: FloatArray
    event: NDArray[np.bool_]
    risk: FloatArray

    @classmethod
    def of(cls, time: ArrayLike, event: ArrayLike, risk: ArrayLike) -> Survival:
        t = np.asarray(time, dtype=np.float64)
        e = np.asarray(event).astype(bool)
        r = np.asarray(risk, dtype=np.float64)
        if t.ndim != 1 or e.shape != t.shape or r.shape != t.shape:
            raise ValueError(f"time, event and risk must be 1-D of one length, got {t.shape}, "
                             f"{e.shape}, {r.shape}")
        if not (np.isfinite(t).all() and np.isfinite(r).all()):
            raise ValueError("time and risk must be finite")
        return cls(t, e, r)


def concordance_index(time: ArrayLike, event: ArrayLike, risk: ArrayLike) -> float:
    """Harrell's C: the share of comparable pairs whose risk orders them correctly.

    A pair (i, j) is comparable when i progressed first: ``event[i]`` and ``time[i] <
    time[j]``, or equal times with j censored (j was still event-free at i's progression).
    It is concordant when ``risk[i] > risk[j]``; tied risks count one half.

    Raises:
        ValueError: no pair is comparable (no event, or every event at the latest time).
    """
    s = Survival.of(time, event, risk)
    t, e, r = s.time, s.event, s.risk
    comparable = e[:, None] & ((t[:, None] < t[None, :])
                               | ((t[:, None] == t[None, :]) & ~e[None, :]))
    n = int(comparable.sum())
    if n == 0:
        raise ValueError("concordance index needs at least one comparable pair")
    wins = (r[:, None] > r[None, :]) + 0.5 * (r[:, None] == r[None, :])
    return float((wins * comparable).sum() / n)


def censoring_survival(time: ArrayLike, event: ArrayLike) -> Callable[[FloatArray], FloatArray]:
    """Kaplan-Meier estimate of the censoring distribution, ``G(t-)`` = P(not censored before t).

    Censorings are the "events" of this estimate; at a time with both, the patients at risk are
    those with follow-up of at least that time. The left limit is used so a patient whose own
    time is a censoring time is not weighted by it.
    """
    t = np.asarray(time, dtype=np.float64)
    censored = ~np.asarray(event).astype(bool)
    times, drops = np.unique(t[censored], return_counts=True)
    at_risk = t.size - np.searchsorted(np.sort(t), times, side="left")
    steps = np.cumprod(1.0 - drops / at_risk) if times.size else np.array([])

    def before(x: FloatArray) -> FloatArray:
        k = np.searchsorted(times, np.asarray(x, dtype=np.float64), side="left")
        return np.where(k == 0, 1.0, steps[np.maximum(k - 1, 0)] if steps.size else 1.0)

    return before


def cumulative_dynamic_auc(time: ArrayLike, event: ArrayLike, risk: ArrayLike,
                           at_days: float) -> float:
    """Uno's IPCW estimator of the cumulative/dynamic AUC at ``at_days``.

    Cases progressed by ``at_days`` (``time <= at_days`` with an event), each weighted by
    ``1 / G(time-)``; controls are everyone still followed after ``at_days``. The AUC is the
    weighted share of (case, control) pairs with the case's risk higher, ties one half.

    Raises:
        ValueError: no case or no control at ``at_days``, or a case with zero weight.
    """
    s = Survival.of(time, event, risk)
    t, e, r = s.time, s.event, s.risk
    cases = e & (t <= at_days)
    controls = t > at_days
    if not cases.any() or not controls.any():
        raise ValueError(f"time-dependent AUC at {at_days:g} days needs a progression by then "
                         "and a patient followed beyond it")
    g = censoring_survival(t, e)(t[cases])
    if (g <= 0).any():
        raise ValueError("the censoring distribution reaches zero before a progression")
    w = 1.0 / g
    rc, rn = r[cases][:, None], r[controls][None, :]
    wins = (rc > rn) + 0.5 * (rc == rn)
    return float((w[:, None] * wins).sum() / (w.sum() * controls.sum()))


def median_event_time(time: ArrayLike, event: ArrayLike) -> float | None:
    """Median follow-up of the patients who progressed; None without any."""
    t = np.asarray(time, dtype=np.float64)[np.asarray(event).astype(bool)]
    return float(np.median(t)) if t.size else None


def bootstrap_ci(
    statistic: Callable[[FloatArray, NDArray[np.bool_], FloatArray], float],
    time: ArrayLike,
    event: ArrayLike,
    risk: ArrayLike,
    *,
    n_resamples: int,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile CI of ``statistic(time, event, risk)`` over patients resampled with
    replacement; resamples where it is undefined are skipped (None if all are)."""
    s = Survival.of(time, event, risk)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        i = rng.integers(0, s.time.size, size=s.time.size)
        try:
            values.append(statistic(s.time[i], s.event[i], s.risk[i]))
        except ValueError:
            continue
    if not values:
        return None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
