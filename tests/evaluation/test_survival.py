"""C-index and Uno's time-dependent AUC against hand computation and brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from medseq.evaluation import survival


def _harrell_brute_force(t: np.ndarray, e: np.ndarray, r: np.ndarray) -> float:
    num = den = 0.0
    for i, j in itertools.permutations(range(t.size), 2):
        if e[i] and (t[i] < t[j] or (t[i] == t[j] and not e[j])):
            den += 1
            num += 1.0 if r[i] > r[j] else 0.5 if r[i] == r[j] else 0.0
    return num / den


def test_concordance_index_by_hand() -> None:
    # comparable: 0 with 1,2,3,4 (all concordant); 2 with 3,4 (risk 0.1 below both: 0);
    # 3 with 4 (tied risk: 1/2) -> 4.5 of 7
    c = survival.concordance_index([1, 2, 3, 4, 5], [1, 0, 1, 1, 0],
                                   [0.9, 0.5, 0.1, 0.6, 0.6])
    assert c == pytest.approx(4.5 / 7)


def test_concordance_tied_times() -> None:
    assert survival.concordance_index([2, 2], [1, 0], [1.0, 0.0]) == 1.0  # censored survived
    with pytest.raises(ValueError, match="comparable"):
        survival.concordance_index([2, 2], [1, 1], [1.0, 0.0])


def test_concordance_equals_brute_force_on_random_data_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        t = rng.integers(1, 15, 40).astype(float)
        e = rng.random(40) < 0.6
        r = np.round(rng.normal(size=40), 1)
        assert survival.concordance_index(t, e, r) == pytest.approx(
            _harrell_brute_force(t, e, r))


def test_censoring_kaplan_meier_left_limit_by_hand() -> None:
    g = survival.censoring_survival([1, 2, 3, 4, 5, 6], [1, 0, 1, 0, 1, 0])
    # censorings at 2 (5 at risk), 4 (3 at risk), 6 (1 at risk)
    np.testing.assert_allclose(g(np.array([1, 2, 2.5, 4, 5, 6, 7.0])),
                               [1, 1, 0.8, 0.8, 0.8 * 2 / 3, 0.8 * 2 / 3, 0.0])


def test_uno_time_dependent_auc_by_hand() -> None:
    time = [1, 2, 3, 4, 5, 6]
    event = [1, 0, 1, 0, 1, 0]
    risk = [0.8, 0.3, 0.4, 0.5, 0.2, 0.4]
    # cases by 3.5: patient 0 (G(1-)=1) and 2 (G(3-)=0.8 -> weight 1.25); controls: 3, 4, 5.
    # case 0 outranks all 3 controls; case 2 beats 0.2, ties 0.4, loses to 0.5: 1.5
    expected = (1 * 3 + 1.25 * 1.5) / ((1 + 1.25) * 3)
    assert survival.cumulative_dynamic_auc(time, event, risk, 3.5) == pytest.approx(expected)
    with pytest.raises(ValueError, match="needs a progression"):
        survival.cumulative_dynamic_auc(time, event, risk, 0.5)


def test_uno_auc_without_censoring_is_the_plain_auc_of_progressed_by_t() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    t = rng.uniform(1, 100, 50)
    r = -t + rng.normal(0, 20, 50)
    e = np.ones(50, bool)
    auc = survival.cumulative_dynamic_auc(t, e, r, 40.0)
    assert auc == pytest.approx(roc_auc_score(t <= 40.0, r))


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(2)
    t = rng.uniform(1, 100, 60)
    e = rng.random(60) < 0.7
    r = -t + rng.normal(0, 30, 60)
    c = survival.concordance_index(t, e, r)
    ci = survival.bootstrap_ci(survival.concordance_index, t, e, r, n_resamples=200, seed=5)
    assert ci is not None
    assert ci[0] <= c <= ci[1]
    assert ci == survival.bootstrap_ci(survival.concordance_index, t, e, r, n_resamples=200,
                                       seed=5)
    assert survival.median_event_time([1, 2, 3, 10], [1, 0, 1, 1]) == 3.0
    assert survival.median_event_time([1], [0]) is None
