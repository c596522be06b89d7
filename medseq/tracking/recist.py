"""RECIST 1.1 target-lesion response, and its volumetric analogue.

Pure functions over measurements; which lesions are targets and what they measure is decided
upstream. The rules are those of ``shared/RECIST.md`` (Eisenhauer et al. 2009); departures are
listed in ``docs/track.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from medseq.contracts.tracks import Response

PR_THRESHOLD = -30.0
"""Percent change of the SOD from baseline at or below which a follow-up is a partial response."""
PD_THRESHOLD = 20.0
"""Percent change of the SOD from the nadir at or above which (with PD_ABSOLUTE_MM) it is PD."""
PD_ABSOLUTE_MM = 5.0
"""Minimum absolute SOD increase over the nadir for progression."""
NODE_NORMAL_SHORT_AXIS_MM = 10.0
"""A nodal target whose short axis is below this counts as normal (compatible with CR)."""
MEASURABLE_LESION_MM = 10.0
MEASURABLE_NODE_SHORT_AXIS_MM = 15.0
MAX_TARGETS = 5
MAX_TARGETS_PER_ORGAN = 2
VOLUMETRIC_RESPONSE_PCT = -65.0
"""Total target volume change from baseline at or below which the volumetric category is PR."""
VOLUMETRIC_PROGRESSION_PCT = 73.0
"""Total target volume change from the nadir at or above which the volumetric category is PD."""
_EPS = 1e-9


_RANK = {Response.CR: 0, Response.PR: 1, Response.SD: 2, Response.PD: 3, Response.NE: 4}


@dataclass(frozen=True)
class FollowUp:
    """What a follow-up shows for one patient.

    ``diameters_mm`` maps each baseline target's id to its measurement now: the longest axial
    diameter for a non-nodal target, the short axis for a nodal one, and 0.0 when it is gone.
    """

    diameters_mm: Mapping[str, float]
    new_lesions: bool = False
    non_targets_present: bool = False
    non_target_progression: bool = False


@dataclass(frozen=True)
class Assessment:
    """The response at one follow-up, with the numbers that decided it."""

    sod_mm: float
    change_from_baseline_pct: float | None
    change_from_nadir_pct: float | None
    nadir_mm: float
    """Smallest SOD on study before this follow-up (baseline included)."""
    response: Response
    reasons: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class BaselineLesion:
    """A baseline lesion as target selection sees it."""

    lesion_id: str
    longest_diameter_mm: float
    short_axis_mm: float
    nodal: bool = False
    organ: str | None = None


def is_measurable(lesion: BaselineLesion, *, slice_thickness_mm: float) -> bool:
    """RECIST 1.1 measurability at baseline.

    Non-nodal: longest axial diameter >= 10 mm, or >= 2x slice thickness when slices are
    thicker than 5 mm. Nodal: short axis >= 15 mm.
    """
    if lesion.nodal:
        return lesion.short_axis_mm + _EPS >= MEASURABLE_NODE_SHORT_AXIS_MM
    minimum = max(MEASURABLE_LESION_MM, 2.0 * slice_thickness_mm)
    return lesion.longest_diameter_mm + _EPS >= minimum


def target_measure_mm(lesion: BaselineLesion) -> float:
    """The number a target contributes to the SOD: short axis for nodes, else longest diameter."""
    return lesion.short_axis_mm if lesion.nodal else lesion.longest_diameter_mm


def select_targets(
    lesions: Sequence[BaselineLesion], *, slice_thickness_mm: float
) -> list[BaselineLesion]:
    """Up to 5 largest measurable baseline lesions, at most 2 per known organ.

    Lesions without an organ are each treated as their own organ (a plain mask says nothing of
    organs). Ties are broken by lesion id so the choice is deterministic.
    """
    measurable = [
        les for les in lesions if is_measurable(les, slice_thickness_mm=slice_thickness_mm)
    ]
    measurable.sort(key=lambda les: (-target_measure_mm(les), les.lesion_id))
    chosen: list[BaselineLesion] = []
    per_organ: dict[str, int] = {}
    for lesion in measurable:
        if len(chosen) == MAX_TARGETS:
            break
        if lesion.organ is not None:
            if per_organ.get(lesion.organ, 0) >= MAX_TARGETS_PER_ORGAN:
                continue
            per_organ[lesion.organ] = per_organ.get(lesion.organ, 0) + 1
        chosen.append(lesion)
    return chosen


def assess(
    baseline_mm: Mapping[str, float],
    followups: Sequence[FollowUp],
    *,
    nodal: Mapping[str, bool] | None = None,
) -> list[Assessment]:
    """Assess every follow-up against the baseline SOD and the running nadir.

    Args:
        baseline_mm: target id -> baseline measurement (longest diameter, or short axis for nodes).
        followups: the follow-ups in time order.
        nodal: target id -> whether it is a lymph node (default: none are).

    Returns:
        One assessment per follow-up. Without targets the response is PD when new lesions or
        unequivocal non-target progression appear, else NE.
    """
    nodal = nodal or {}
    baseline_sod = float(sum(baseline_mm.values()))
    nadir = baseline_sod
    out: list[Assessment] = []
    for fu in followups:
        missing = set(baseline_mm) - set(fu.diameters_mm)
        if missing:
            raise ValueError(f"follow-up lacks targets {sorted(missing)}")
        sod = float(sum(fu.diameters_mm[t] for t in baseline_mm))
        from_baseline = _pct(sod, baseline_sod)
        from_nadir = _pct(sod, nadir)
        response, reasons = _classify(baseline_mm, fu, sod, baseline_sod, nadir, nodal)
        out.append(Assessment(sod, from_baseline, from_nadir, nadir, response, tuple(reasons)))
        nadir = min(nadir, sod)
    return out


def best_overall_response(responses: Sequence[Response]) -> Response:
    """Best response recorded from the start of treatment until progression.

    Responses after the first PD do not count; NE only when nothing else was recorded.
    """
    best = Response.NE
    for response in responses:
        if _RANK[response] < _RANK[best]:
            best = response
        if response is Response.PD:
            break
    return best


def is_responder(response: Response) -> bool:
    """Responder for training labels: best overall response CR or PR."""
    return response in (Response.CR, Response.PR)


def volumetric_changes(
    total_volumes_ml: Sequence[float],
) -> list[tuple[float | None, float | None]]:
    """Percent change of the total target volume from baseline and from the nadir, per follow-up."""
    if not total_volumes_ml:
        return []
    baseline = total_volumes_ml[0]
    nadir = baseline
    out: list[tuple[float | None, float | None]] = []
    for volume in total_volumes_ml[1:]:
        out.append((_pct(volume, baseline), _pct(volume, nadir)))
        nadir = min(nadir, volume)
    return out


def volumetric_category(
    total_volumes_ml: Sequence[float], *, new_lesions: Sequence[bool] | None = None
) -> list[Response]:
    """Volumetric analogue of RECIST per follow-up: CR at 0 mL, PR <= -65% from baseline,
    PD >= +73% from the nadir or any new lesion, else SD."""
    new = list(new_lesions) if new_lesions is not None else [False] * (len(total_volumes_ml) - 1)
    categories: list[Response] = []
    changes = volumetric_changes(total_volumes_ml)
    for vol, (from_base, from_nadir), is_new in zip(
        total_volumes_ml[1:], changes, new, strict=True
    ):
        if from_base is None or from_nadir is None:
            categories.append(Response.PD if is_new else Response.NE)
        elif is_new or from_nadir + _EPS >= VOLUMETRIC_PROGRESSION_PCT:
            categories.append(Response.PD)
        elif vol <= _EPS:
            categories.append(Response.CR)
        elif from_base - _EPS <= VOLUMETRIC_RESPONSE_PCT:
            categories.append(Response.PR)
        else:
            categories.append(Response.SD)
    return categories


def _classify(
    baseline_mm: Mapping[str, float],
    fu: FollowUp,
    sod: float,
    baseline_sod: float,
    nadir: float,
    nodal: Mapping[str, bool],
) -> tuple[Response, list[str]]:
    reasons: list[str] = []
    if fu.new_lesions:
        reasons.append("new lesion")
    if fu.non_target_progression:
        reasons.append("unequivocal non-target progression")
    if not baseline_mm:
        return (Response.PD if reasons else Response.NE), reasons or ["no target lesions"]
    if sod - nadir + _EPS >= PD_ABSOLUTE_MM and sod + _EPS >= nadir * (1 + PD_THRESHOLD / 100):
        reasons.append(f"SOD +{sod - nadir:.1f} mm from nadir {nadir:.1f} mm")
    if reasons:
        return Response.PD, reasons
    targets_gone = all(
        (fu.diameters_mm[t] < NODE_NORMAL_SHORT_AXIS_MM) if nodal.get(t, False)
        else fu.diameters_mm[t] <= _EPS
        for t in baseline_mm
    )
    if targets_gone:
        if fu.non_targets_present:
            return Response.PR, ["targets gone, non-target lesions persist"]
        return Response.CR, ["all targets gone"]
    if baseline_sod > 0 and sod <= baseline_sod * (1 + PR_THRESHOLD / 100) + _EPS:
        return Response.PR, [f"SOD {_pct(sod, baseline_sod):.1f}% from baseline"]
    return Response.SD, []


def _pct(value: float, reference: float) -> float | None:
    if reference <= 0:
        return None
    return 100.0 * (value - reference) / reference
