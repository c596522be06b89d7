"""Early-prediction labels: what happens AFTER the first k scans a model sees.

A model that sees the first k scans (``observe``) must predict something the scans do not
already show, else it learns to read RECIST off the images. :func:`early_target` turns a
patient's tracked responses (one :class:`~medseq.contracts.tracks.ResponseRow` per scan, in
order) into a :class:`Target`, or an :class:`Exclusion` saying why the patient has none.

Scans 0..k-1 are observed; scans k..T-1 come after. A scan counts as PD when its response is
PD or it shows a new lesion. Rules (``docs/train.md`` "Labels for early prediction"):

- every kind: PD at an observed scan decides the label already (excluded, *determined*);
- ``best_after`` and ``landmark``: so does CR or PR at an observed scan;
- ``best_after``: best overall response over the after-scans, RECIST style (in order, up to
  and including the first PD; NE skipped);
- ``landmark``: the response of the evaluable after-scan nearest ``landmark_days`` (within
  ``landmark_window_days``, ties to the earlier); PD at an earlier after-scan makes it PD;
- ``progression``: days from the last observed scan to the first PD (event) or to the last
  scan (censored); observed CR/PR does not decide it.

Labels: binary task 1 for CR/PR; ``recist`` task the index in CR, PR, SD, PD; ``progression``
1 when progression was seen, 0 when censored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from medseq.contracts.run import RECIST_CLASSES
from medseq.contracts.tracks import PatientTracking, Response, ResponseRow
from medseq.tracking.recist import best_overall_response

EARLY_KINDS: tuple[str, ...] = ("best_after", "landmark", "progression")
"""Label kinds about the scans after the observed ones (the others: ``overall``, ``given``)."""
_RESPONDERS = (Response.CR, Response.PR)


@dataclass(frozen=True)
class LabelSpec:
    """Which label to compute, and from how many observed scans."""

    kind: str
    observe: int | None
    landmark_days: float = 180.0
    """``landmark``: the day (from baseline) whose response is the label."""
    landmark_window_days: float = 45.0
    """``landmark``: how far from ``landmark_days`` the landmark scan may lie."""


@dataclass(frozen=True)
class Target:
    """A patient's label (``progression``: also the time and whether progression was seen)."""

    label: int
    time_days: float | None = None
    """``progression``: days from the last observed scan to progression or censoring."""
    event: bool | None = None
    """``progression``: True when progression was seen, False when censored."""


@dataclass(frozen=True)
class Exclusion:
    """Why a patient has no label; ``determined``: the observed scans already decide it."""

    reason: str
    determined: bool


def early_target(patient: PatientTracking, spec: LabelSpec, *, task: str) -> Target | Exclusion:
    """The label of ``patient`` under ``spec``, or why it has none.

    Raises:
        ValueError: ``spec.kind`` is not an early kind, ``spec.observe`` is None, or the
            ``progression`` kind with a task other than ``binary``.
    """
    if spec.kind not in EARLY_KINDS:
        raise ValueError(f"label kind {spec.kind!r} is not one of {', '.join(EARLY_KINDS)}")
    if spec.observe is None:
        raise ValueError(f"label kind {spec.kind} needs observe (the scans the model sees)")
    if spec.kind == "progression" and task != "binary":
        raise ValueError(f"label kind progression needs task binary (got {task})")
    if not patient.has_mask:
        return Exclusion("no lesion mask", determined=False)
    if not patient.tracked:
        return Exclusion("not tracked", determined=False)
    k = spec.observe
    observed, after = patient.responses[:k], patient.responses[k:]
    decided = _decided(observed, responses_decide=spec.kind != "progression")
    if decided is not None:
        return decided
    if spec.kind == "progression":
        return _progression(observed, after, k)
    if not after:
        return Exclusion(f"no scan after the first {k}", determined=False)
    if spec.kind == "best_after":
        response = best_overall_response([c for c in map(category, after) if c is not None])
        if response is Response.NE:
            return Exclusion(f"no evaluable scan after the first {k}", determined=False)
        return Target(_label(response, task))
    return _landmark(after, spec, task)


def category(row: ResponseRow) -> Response | None:
    """The scan's RECIST category, PD when it shows a new lesion; None at baseline."""
    if row.new_lesions:
        return Response.PD
    return row.response


def _decided(observed: Sequence[ResponseRow], *, responses_decide: bool) -> Exclusion | None:
    """PD (and, when ``responses_decide``, CR/PR) at an observed scan, PD first."""
    for row in observed:
        if category(row) is Response.PD:
            return Exclusion(f"progression already seen by scan {row.timepoint}", determined=True)
    if responses_decide:
        for row in observed:
            if category(row) in _RESPONDERS:
                return Exclusion(f"response already seen by scan {row.timepoint}",
                                 determined=True)
    return None


def _progression(observed: Sequence[ResponseRow], after: Sequence[ResponseRow],
                 k: int) -> Target | Exclusion:
    start = observed[-1].days if observed else 0
    progressed = next((row for row in after if category(row) is Response.PD), None)
    if progressed is not None:
        return Target(label=1, time_days=float(progressed.days - start), event=True)
    time = float(after[-1].days - start) if after else 0.0
    if time <= 0:
        return Exclusion(f"no follow-up after the first {k} scans", determined=False)
    return Target(label=0, time_days=time, event=False)


def _landmark(after: Sequence[ResponseRow], spec: LabelSpec, task: str) -> Target | Exclusion:
    day, window = spec.landmark_days, spec.landmark_window_days
    in_window = [row for row in after
                 if category(row) not in (None, Response.NE) and abs(row.days - day) <= window]
    # Nearest the landmark day; min() keeps the first of equals, the earlier scan.
    landmark = min(in_window, key=lambda row: abs(row.days - day), default=None)
    last_day = landmark.days if landmark is not None else day - window
    if any(category(row) is Response.PD and row.days <= last_day for row in after):
        return Target(_label(Response.PD, task))  # progressed before (or at) the landmark
    if landmark is None:
        return Exclusion(f"no scan within {window:g} days of day {day:g}", determined=False)
    response = category(landmark)
    assert response is not None  # in_window holds evaluable scans only
    return Target(_label(response, task))


def _label(response: Response, task: str) -> int:
    if task == "recist":
        return RECIST_CLASSES.index(response.value)
    return int(response in _RESPONDERS)
