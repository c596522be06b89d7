"""Patient-level stratified folds and validation hold-outs."""

from __future__ import annotations

from collections import Counter

import pytest

from medseq.errors import UsageError
from medseq.training.splits import stratified_folds, stratified_holdout

LABELS = {f"p{i:02d}": int(i % 3 == 0) for i in range(30)}


def test_folds_keep_class_balance_and_sizes() -> None:
    folds = stratified_folds(LABELS, 5, seed=1)
    assert set(folds) == set(LABELS)
    sizes = Counter(folds.values())
    assert set(sizes.values()) == {6}
    for k in range(5):
        positives = sum(LABELS[p] for p, f in folds.items() if f == k)
        assert positives == 2


def test_same_seed_same_folds_other_seed_other_folds() -> None:
    assert stratified_folds(LABELS, 5, seed=3) == stratified_folds(LABELS, 5, seed=3)
    assert stratified_folds(LABELS, 5, seed=3) != stratified_folds(LABELS, 5, seed=4)


def test_too_few_patients_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="cannot fill 5 folds"):
        stratified_folds({"a": 0, "b": 1}, 5, seed=0)


def test_holdout_takes_both_classes_and_is_disjoint() -> None:
    patients = sorted(LABELS)[:20]
    train, val = stratified_holdout(patients, LABELS, 0.2, seed=0)
    assert not set(train) & set(val)
    assert sorted(train + val) == patients
    assert {LABELS[p] for p in val} == {0, 1}
    assert len(val) == 4
