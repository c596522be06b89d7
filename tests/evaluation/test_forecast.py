"""The forecast against persistence: same pairs, patient-level CI and Wilcoxon test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon

from medseq.evaluation.forecast import forecast_vs_persistence
from medseq.evaluation.rundir import ForecastPair, forecast_pairs


def test_pairs_need_the_burden_before_the_forecast_and_after() -> None:
    pairs = forecast_pairs([10.0, None, 6.0, 5.0], [9.0, 7.0, 5.5, 4.0])
    # t=0: next burden unknown; t=1: burden at t unknown; t=3: no next scan
    assert pairs == [ForecastPair(observed=5.0, forecast=5.5, previous=6.0)]


def test_mae_persistence_and_wilcoxon_by_hand() -> None:
    patients = [
        [ForecastPair(8.0, 7.5, 10.0), ForecastPair(6.0, 6.5, 8.0)],  # model 0.5, persist 2
        [ForecastPair(4.0, 4.0, 5.0)],  # model 0, persistence 1
        [ForecastPair(3.0, 5.0, 3.5)],  # model 2, persistence 0.5
    ]
    f = forecast_vs_persistence(patients, n_resamples=200, seed=1)
    assert f.n_pairs == 4
    assert f.n_patients == 3
    assert f.mae_ml == pytest.approx((0.5 + 0.5 + 0 + 2) / 4)
    assert f.persistence is not None
    assert f.persistence.mae_ml == pytest.approx((2 + 2 + 1 + 0.5) / 4)
    expected = wilcoxon([0.5 - 2.0, 0 - 1.0, 2.0 - 0.5]).pvalue
    assert f.persistence.p_value == pytest.approx(expected)
    assert f.persistence.beats is False  # lower MAE, but not significant with 3 patients
    assert f.mae_ci is not None
    assert f.mae_ci[0] <= f.mae_ml <= f.mae_ci[1]


def test_a_good_forecast_beats_persistence_and_a_noisy_one_does_not() -> None:
    rng = np.random.default_rng(0)
    good, bad = [], []
    for _ in range(30):
        v0 = rng.uniform(5, 30)
        v1 = v0 * 0.6
        good.append([ForecastPair(v1, v1 * (1 + rng.normal(0, 0.05)), v0)])
        bad.append([ForecastPair(v1, v1 * (1 + rng.normal(0, 1.5)), v0)])
    won = forecast_vs_persistence(good, n_resamples=100)
    lost = forecast_vs_persistence(bad, n_resamples=100)
    assert won.persistence is not None
    assert won.persistence.beats is True
    assert lost.persistence is not None
    assert lost.persistence.beats is False


def test_no_pairs() -> None:
    f = forecast_vs_persistence([[], []], n_resamples=100)
    assert f.mae_ml is None
    assert f.n_pairs == 0
    assert f.persistence is not None
    assert f.persistence.beats is None
