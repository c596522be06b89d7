"""The verdict: one honest sentence on whether the model beats its baselines.

A model that does not beat the size-only baseline must say so; with features it also says how it
compares with the classical feature model, and for ``progression`` labels it gives the C-indices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medseq.contracts.evaluation import Comparison, SurvivalMetrics

ALPHA = 0.05
"""Significance level of the verdict's DeLong tests."""
MIN_PER_CLASS = 10
"""Fewer patients than this in either class make the verdict say it is not reliable."""
SIZE_ONLY, FEATURE_MODEL, MODEL = "size-only", "feature model", "model"
"""Names of the scorers in the comparisons."""

__all__ = ["ALPHA", "FEATURE_MODEL", "MIN_PER_CLASS", "MODEL", "SIZE_ONLY", "verdict"]


def verdict(
    comparison: Comparison | Mapping[str, Any],
    *,
    alpha: float = ALPHA,
    n_patients: int | None = None,
    n_responders: int | None = None,
    feature_comparison: Comparison | Mapping[str, Any] | None = None,
    progression: SurvivalMetrics | None = None,
) -> str:
    """One honest sentence comparing the model with the size-only baseline, then with the
    classical feature model (when there is one), then the C-indices (``progression`` labels).

    With fewer than :data:`MIN_PER_CLASS` patients in either class the DeLong test's normal
    approximation is not to be trusted, and the sentence says so.
    """
    if not isinstance(comparison, Comparison):
        comparison = Comparison.model_validate(comparison)
    diff = comparison.auc_difference
    p = comparison.p_value
    if diff is None:
        return "cannot compare with the size-only baseline: the cohort holds only one class"
    outcome = _outcome(diff, p, alpha)
    if outcome == "beats":
        sentence = "the model beats the size-only baseline"
    elif outcome == "worse":
        sentence = "the model is worse than the size-only baseline"
    else:
        sentence = "the model does not beat the size-only baseline"
    sentence += f" ({_diff_text(diff, p)})"
    if feature_comparison is not None:
        if not isinstance(feature_comparison, Comparison):
            feature_comparison = Comparison.model_validate(feature_comparison)
        fdiff, fp = feature_comparison.auc_difference, feature_comparison.p_value
        if fdiff is not None:
            against = {"beats": "it beats the classical feature model",
                       "worse": "it is worse than the classical feature model"}.get(
                _outcome(fdiff, fp, alpha),
                "it is not significantly different from the classical feature model")
            sentence += f"; {against} ({_diff_text(fdiff, fp)})"
    if progression is not None:
        parts = [f"{name} {score.c_index:.3f}" for name, score in (
            (MODEL, progression.model), (SIZE_ONLY, progression.baseline),
            (FEATURE_MODEL, progression.feature_model)) if score is not None
            and score.c_index is not None]
        if parts:
            sentence += "; C-index " + ", ".join(parts)
    if n_patients is not None and n_responders is not None:
        smaller = min(n_responders, n_patients - n_responders)
        if smaller < MIN_PER_CLASS:
            sentence += (f"; but with {n_patients} patients ({n_responders} responders) this "
                         "comparison is not reliable: the test needs at least "
                         f"{MIN_PER_CLASS} patients in each class")
    return sentence


def _outcome(diff: float, p: float | None, alpha: float) -> str:
    """``beats``, ``worse`` or ``same``: a difference significant at ``alpha``, or not."""
    if p is not None and p < alpha:
        return "beats" if diff > 0 else "worse" if diff < 0 else "same"
    return "same"


def _diff_text(diff: float, p: float | None) -> str:
    return f"AUC difference {diff:+.3f}, DeLong p={'not computable' if p is None else _p(p)}"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"
