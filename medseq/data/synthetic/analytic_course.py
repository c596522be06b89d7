"""The RECIST course from the analytic lesion geometry, and the follow-ups voxels could flip.

The recorded ground truth measures the rasterised masks (what a perfect reader of the written
files sees). This module derives the same course without a mask, from each lesion's shape and
volume and the scan's slice planes (:mod:`.analytic`), through the generator's own rules
(:mod:`.recist_truth`). It also says, per follow-up, which categories *any* mask on this grid
could give: every lesion's mask diameter is bounded around its analytic one, and each deciding
fact (measurable, target set, gone, new lesion, PR and PD thresholds) is evaluated over those
bounds. A follow-up whose possible categories are more than one is *borderline*: the written
truth may legitimately differ from the analytic one there. Tests check that the recorded truth
always lies in the possible set and equals the analytic course wherever it is not borderline.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from medseq.data.synthetic.analytic import (
    CHORD_ERROR_MM,
    Surface,
    sample_surface,
    section_diameters,
    surfaces_apart,
)
from medseq.data.synthetic.plan import PatientPlan
from medseq.data.synthetic.recist_truth import (
    BEST_FIRST,
    Candidate,
    Category,
    Course,
    Seen,
    category,
    choose_targets,
    measurable,
    patient_course,
    progressed,
    shrunk,
)

BELOW_VOXELS = 2.0
"""A mask's longest diameter is at least the analytic one minus this many in-plane voxels.

Empirical, with a margin: the voxel centres nearest the chord's two ends lie inside the section,
by up to about a voxel each, and the measurement's half-voxel allowance gives half a voxel back.
Over 990 small, 1,001 medium and 188 large lesion-scans (seed 0) the largest shortfall was 1.39,
0.99 and 0.34 voxels, the largest ones on lesions of one or two voxels (``docs/sample-data.md``)."""
ABOVE_VOXELS = 0.5
"""A mask's longest diameter exceeds the analytic one by at most this many in-plane voxels (plus
the analytic chord's own sampling error, ``CHORD_ERROR_MM``): the measured voxel centres lie
inside the section and the measurement adds half a voxel."""

ALL = frozenset(Category)


@dataclass(frozen=True)
class AnalyticLesion:
    """A lesion on one scan as its shape gives it, with the range a mask could measure."""

    longest_mm: float
    short_mm: float
    low_mm: float
    """Smallest longest diameter a mask could give (0: the mask may miss the lesion)."""
    high_mm: float
    present: bool | None
    """Whether a mask surely holds it (``None``: it may or may not)."""
    isolated: bool
    """No earlier lesion comes close enough to take voxels from it."""


@dataclass(frozen=True)
class AnalyticCourse:
    """A patient's course from the analytic geometry, and what voxelisation could change."""

    scans: tuple[Mapping[str, AnalyticLesion], ...]
    course: Course
    possible: tuple[frozenset[Category], ...]
    """Per follow-up, every category a mask on the scan grids could give."""
    possible_best: frozenset[Category]

    def borderline(self, followup: int) -> bool:
        """Whether voxelisation could change the category at follow-up ``followup`` (0-based)."""
        return len(self.possible[followup]) > 1


def analytic_course(plan: PatientPlan) -> AnalyticCourse:
    """Derive ``plan``'s RECIST course from its lesions' shapes, not from their masks."""
    scans = tuple(analytic_scan(plan, t) for t in range(len(plan.scans)))
    course = patient_course(
        [
            {
                lid: Seen(les.longest_mm, les.short_mm)
                for lid, les in scan.items()
                if les.longest_mm > 0.0
            }
            for scan in scans
        ],
        organs={les.lesion_id: les.organ for les in plan.lesions},
        slice_mm=plan.scans[0].grid.spacing[2],
    )
    possible = _possible(scans, plan)
    return AnalyticCourse(scans, course, possible, _possible_best(possible))


def analytic_scan(plan: PatientPlan, t: int) -> dict[str, AnalyticLesion]:
    """Every lesion that exists at scan ``t`` (volume > 0), by id."""
    grid = plan.scans[t].grid
    body_to_world = plan.body_to_world(t)
    sx, sy, sz = grid.spacing
    voxel = 0.5 * (sx + sy)
    half_diagonal = 0.5 * float(np.sqrt(sx * sx + sy * sy + sz * sz))
    out: dict[str, AnalyticLesion] = {}
    earlier: list[Surface] = []
    for lesion in plan.lesions:
        volume = lesion.course.volumes_ml[t]
        if volume <= 0.0:
            continue
        shape = lesion.shape
        scale = shape.scale_for(volume)
        surface = sample_surface(shape, scale)
        # The mask gives up voxels 26-adjacent to an earlier lesion's: none when the surfaces
        # are farther apart than a voxel diagonal.
        isolated = all(
            surfaces_apart(surface, other, 2.0 * half_diagonal) for other in earlier
        )
        earlier.append(surface)
        section = section_diameters(shape, scale, body_to_world, grid, surface=surface)
        longest = section.longest_mm if section is not None else 0.0
        short = section.short_mm if section is not None else 0.0
        # A ball wider than a voxel's diagonal always holds a voxel centre.
        sure = isolated and surface.inner_mm >= half_diagonal
        out[lesion.lesion_id] = AnalyticLesion(
            longest_mm=longest,
            short_mm=short,
            low_mm=max(0.0, longest - BELOW_VOXELS * voxel) if sure else 0.0,
            high_mm=longest + ABOVE_VOXELS * voxel + CHORD_ERROR_MM,
            present=True if sure else None,
            isolated=isolated,
        )
    return out


def _possible(
    scans: Sequence[Mapping[str, AnalyticLesion]], plan: PatientPlan
) -> tuple[frozenset[Category], ...]:
    """Per follow-up, the union over every target set a mask could lead to."""
    n_followups = len(scans) - 1
    organs = {les.lesion_id: les.organ for les in plan.lesions}
    target_sets = _target_sets(scans[0], organs, plan.scans[0].grid.spacing[2])
    if target_sets is None:
        return (ALL,) * n_followups
    per_set = [_possible_given(scans, targets) for targets in target_sets]
    return tuple(frozenset().union(*(p[j] for p in per_set)) for j in range(n_followups))


def _possible_given(
    scans: Sequence[Mapping[str, AnalyticLesion]], targets: tuple[str, ...]
) -> list[frozenset[Category]]:
    """Per follow-up, the categories a mask could give with these targets."""
    baseline = scans[0]
    base = _sum(baseline, targets)
    nadir = base
    out: list[frozenset[Category]] = []
    for scan in scans[1:]:
        sod = _sum(scan, targets)
        new = _facts(scan[lid].present for lid in scan if lid not in baseline)
        non_target = _facts(
            scan[lid].present for lid in scan if lid in baseline and lid not in targets
        )
        gone = {True, False}
        if any(lid in scan and scan[lid].present for lid in targets):
            gone = {False}
        elif all(lid not in scan for lid in targets):
            gone = {True}
        # Both tests are monotone in each SOD, so the interval ends decide what is possible.
        pd = {progressed(sod[1], nadir[0]), progressed(sod[0], nadir[1])}
        pr = {shrunk(sod[0], base[1]), shrunk(sod[1], base[0])}
        out.append(frozenset(
            category(
                has_targets=bool(targets), new_lesion=n, non_target_progression=False,
                sod_progressed=p, targets_gone=g, non_target_present=nt, sod_shrunk=s,
            )
            for n, p, g, nt, s in itertools.product(new, pd, gone, non_target, pr)
        ))
        nadir = (min(nadir[0], sod[0]), min(nadir[1], sod[1]))
    return out


def _target_sets(
    baseline: Mapping[str, AnalyticLesion], organs: Mapping[str, str], slice_mm: float
) -> list[tuple[str, ...]] | None:
    """Every target set a mask on the baseline grid could lead to (``None``: too unsure)."""
    if any(les.present is None for les in baseline.values()):
        return None
    def candidate(lid: str, size_mm: float) -> Candidate:
        return Candidate(lid, size_mm, size_mm, organs.get(lid))

    sure = [
        lid for lid, les in baseline.items()
        if measurable(candidate(lid, les.low_mm), slice_mm=slice_mm)
    ]
    unsure = [
        lid for lid, les in baseline.items()
        if lid not in sure and measurable(candidate(lid, les.high_mm), slice_mm=slice_mm)
    ]
    out: list[tuple[str, ...]] = []
    for k in range(len(unsure) + 1):
        for extra in itertools.combinations(unsure, k):
            eligible = [*sure, *extra]
            # Every eligible lesion is measurable at its high end, so ranking by it applies
            # only the caps (5 in all, 2 per organ).
            chosen = choose_targets(
                [candidate(lid, baseline[lid].high_mm) for lid in eligible], slice_mm=slice_mm
            )
            if len(chosen) < len(eligible):
                # A cap left some out: the same ones for every mask only if none left out could
                # measure as much as one chosen.
                floor = min(baseline[lid].low_mm for lid in chosen)
                if any(baseline[lid].high_mm >= floor for lid in eligible if lid not in chosen):
                    return None
            out.append(chosen)
    return out


def _sum(scan: Mapping[str, AnalyticLesion], targets: Sequence[str]) -> tuple[float, float]:
    """Lowest and highest SOD a mask could give (a target absent from ``scan`` is 0 mm)."""
    low = sum(scan[lid].low_mm for lid in targets if lid in scan)
    high = sum(scan[lid].high_mm for lid in targets if lid in scan)
    return float(low), float(high)


def _facts(presence: Iterable[bool | None]) -> set[bool]:
    """Possible values of "some lesion of these is present" from each one's presence."""
    values = list(presence)
    if any(v is True for v in values):
        return {True}
    if not values:
        return {False}
    return {True, False}


def _possible_best(possible: Sequence[frozenset[Category]]) -> frozenset[Category]:
    """Every best overall response some choice of the possible categories gives."""
    states: set[tuple[Category, bool]] = {(Category.NE, False)}
    for options in possible:
        nxt: set[tuple[Category, bool]] = set()
        for best, stopped in states:
            if stopped:
                nxt.add((best, True))
                continue
            for option in options:
                better = option if _rank(option) < _rank(best) else best
                nxt.add((better, option is Category.PD))
        states = nxt
    return frozenset(best for best, _ in states)


def _rank(c: Category) -> int:
    return BEST_FIRST.index(c) if c in BEST_FIRST else len(BEST_FIRST)
