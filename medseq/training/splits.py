"""Patient-level stratified k-fold splits, fixed by a seed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from medseq.errors import UsageError


def stratified_folds(labels: Mapping[str, int], folds: int, seed: int) -> dict[str, int]:
    """Assign each patient a fold in ``0..folds-1``, keeping class proportions per fold.

    Patients are shuffled within each class by ``seed`` and dealt round-robin; the deal
    continues across classes so fold sizes differ by at most one.
    """
    if folds < 2:
        raise UsageError(f"--folds must be at least 2, got {folds}")
    if len(labels) < folds:
        raise UsageError(f"{len(labels)} labelled patients cannot fill {folds} folds")
    rng = np.random.default_rng(seed)
    assignment: dict[str, int] = {}
    position = 0
    for label in sorted(set(labels.values())):
        members = sorted(pid for pid, value in labels.items() if value == label)
        for pid in rng.permutation(members):
            assignment[str(pid)] = position % folds
            position += 1
    return dict(sorted(assignment.items()))


def stratified_holdout(
    patients: Sequence[str], labels: Mapping[str, int], fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Split ``patients`` into (train, validation) with about ``fraction`` per class held out.

    Every class with at least two patients gives at least one to validation, so early stopping
    sees both classes when it can.
    """
    rng = np.random.default_rng(seed)
    train: list[str] = []
    val: list[str] = []
    for label in sorted({labels[p] for p in patients}):
        ordered = sorted(p for p in patients if labels[p] == label)
        members = [str(p) for p in rng.permutation(ordered)]
        n_val = min(len(members) - 1, max(1, round(fraction * len(members))))
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return sorted(train), sorted(val)
