"""RECIST 1.1 as the synthetic ground truth states it, apart from :mod:`medseq.tracking`.

The ground truth must not be computed by the code it is meant to test, so the rules of
``shared/RECIST.md`` are written here a second time, as plainly as possible (a test checks that
both statements agree on hand-made and random cases). Every comparison is exact: measurements
are compared as the rationals their floats hold, so "a decrease of at least 30%" is
``10 * SOD <= 7 * baseline SOD`` with no tolerance.

Targets: up to 5 measurable baseline lesions, the largest first, at most 2 per organ (a lesion
without an organ is its own organ); ties go to the smaller lesion id. Measurable: longest
diameter >= 10 mm (>= 2 x slice thickness for slices thicker than 5 mm); a lymph node by its
short axis >= 15 mm. A target measures its longest diameter (a node its short axis), 0 mm when
gone. Per follow-up, in this order: a new lesion or unequivocal non-target progression is PD;
without targets the response is NE; an SOD at least 20% and at least 5 mm above the nadir (the
smallest SOD so far, baseline included) is PD; every target gone (nodes below 10 mm) is CR, or
PR while a non-target lesion persists; an SOD at least 30% below baseline is PR; else SD. The
best overall response is the best category up to and including the first PD.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction


class Category(str, Enum):
    """Response categories (NE: not evaluable)."""

    CR = "CR"
    PR = "PR"
    SD = "SD"
    PD = "PD"
    NE = "NE"


BEST_FIRST = (Category.CR, Category.PR, Category.SD, Category.PD)
"""Categories from best to worst (NE only when nothing else was recorded)."""


@dataclass(frozen=True)
class Candidate:
    """A baseline lesion offered to target selection."""

    lesion_id: str
    longest_mm: float
    short_mm: float
    organ: str | None = None
    nodal: bool = False

    @property
    def size_mm(self) -> float:
        """What the lesion contributes to the SOD: short axis for a node, else longest."""
        return self.short_mm if self.nodal else self.longest_mm


@dataclass(frozen=True)
class Visit:
    """A follow-up: every target's measurement (0 when gone) and what else it shows."""

    target_mm: Mapping[str, float]
    new_lesion: bool = False
    non_target_present: bool = False
    non_target_progression: bool = False


@dataclass(frozen=True)
class Verdict:
    """The response at one follow-up and the numbers it reports."""

    sod_mm: float
    change_from_baseline_pct: float | None
    nadir_mm: float
    response: Category


@dataclass(frozen=True)
class Seen:
    """A lesion as measured on one scan."""

    longest_mm: float
    short_mm: float


@dataclass(frozen=True)
class Course:
    """A patient's RECIST course."""

    targets: tuple[str, ...]
    baseline_sod_mm: float
    verdicts: tuple[Verdict, ...]
    best: Category
    label: int


def measurable(lesion: Candidate, *, slice_mm: float) -> bool:
    """Whether a baseline lesion can be a target."""
    if lesion.nodal:
        return Fraction(lesion.short_mm) >= 15
    return Fraction(lesion.longest_mm) >= max(Fraction(10), 2 * Fraction(slice_mm))


def choose_targets(lesions: Sequence[Candidate], *, slice_mm: float) -> tuple[str, ...]:
    """Ids of the target lesions, largest first."""
    ranked = sorted(
        (les for les in lesions if measurable(les, slice_mm=slice_mm)),
        key=lambda les: (-Fraction(les.size_mm), les.lesion_id),
    )
    chosen: list[str] = []
    per_organ: Counter[str] = Counter()
    for lesion in ranked:
        if len(chosen) == 5:
            break
        if lesion.organ is not None:
            if per_organ[lesion.organ] == 2:
                continue
            per_organ[lesion.organ] += 1
        chosen.append(lesion.lesion_id)
    return tuple(chosen)


def shrunk(sod_mm: float | Fraction, baseline_mm: float | Fraction) -> bool:
    """SOD at least 30% below the baseline SOD."""
    return 10 * Fraction(sod_mm) <= 7 * Fraction(baseline_mm)


def progressed(sod_mm: float | Fraction, nadir_mm: float | Fraction) -> bool:
    """SOD at least 20% and at least 5 mm above the nadir."""
    sod, nadir = Fraction(sod_mm), Fraction(nadir_mm)
    return 5 * sod >= 6 * nadir and sod - nadir >= 5


def category(
    *,
    has_targets: bool,
    new_lesion: bool,
    non_target_progression: bool,
    sod_progressed: bool,
    targets_gone: bool,
    non_target_present: bool,
    sod_shrunk: bool,
) -> Category:
    """The response at a follow-up from the facts that decide it."""
    if new_lesion or non_target_progression:
        return Category.PD
    if not has_targets:
        return Category.NE
    if sod_progressed:
        return Category.PD
    if targets_gone:
        return Category.PR if non_target_present else Category.CR
    if sod_shrunk:
        return Category.PR
    return Category.SD


def judge(
    baseline_mm: Mapping[str, float], visits: Sequence[Visit], *, nodal: Collection[str] = ()
) -> list[Verdict]:
    """The response at every follow-up, in time order.

    Args:
        baseline_mm: target id -> baseline measurement.
        visits: the follow-ups; each measures every target.
        nodal: ids of the targets that are lymph nodes.
    """
    targets = list(baseline_mm)
    baseline = sum((Fraction(baseline_mm[t]) for t in targets), Fraction(0))
    nadir = baseline
    out: list[Verdict] = []
    for visit in visits:
        sod = sum((Fraction(visit.target_mm[t]) for t in targets), Fraction(0))
        response = category(
            has_targets=bool(targets),
            new_lesion=visit.new_lesion,
            non_target_progression=visit.non_target_progression,
            sod_progressed=progressed(sod, nadir),
            targets_gone=all(
                Fraction(visit.target_mm[t]) < 10 if t in nodal else visit.target_mm[t] == 0
                for t in targets
            ),
            non_target_present=visit.non_target_present,
            sod_shrunk=baseline > 0 and shrunk(sod, baseline),
        )
        change = None if baseline == 0 else float(100 * (sod - baseline) / baseline)
        out.append(Verdict(float(sod), change, float(nadir), response))
        nadir = min(nadir, sod)
    return out


def best_response(responses: Sequence[Category]) -> Category:
    """The best category recorded up to and including the first PD."""
    counted = list(responses)
    if Category.PD in counted:
        counted = counted[: counted.index(Category.PD) + 1]
    return next((c for c in BEST_FIRST if c in counted), Category.NE)


def is_responder(best: Category) -> bool:
    """The training label: best overall response CR or PR."""
    return best in (Category.CR, Category.PR)


def patient_course(
    scans: Sequence[Mapping[str, Seen]], *, organs: Mapping[str, str], slice_mm: float
) -> Course:
    """RECIST over a patient's scans.

    Args:
        scans: per scan in time order, lesion id -> measurement of every lesion present (the
            same id is the same lesion on every scan); the first scan is the baseline.
        organs: lesion id -> host organ.
        slice_mm: slice thickness of the baseline scan.
    """
    baseline = scans[0]
    targets = choose_targets(
        [
            Candidate(lid, seen.longest_mm, seen.short_mm, organs.get(lid))
            for lid, seen in baseline.items()
        ],
        slice_mm=slice_mm,
    )
    baseline_mm = {t: baseline[t].longest_mm for t in targets}
    visits = [
        Visit(
            target_mm={t: scan[t].longest_mm if t in scan else 0.0 for t in targets},
            new_lesion=any(lid not in baseline for lid in scan),
            non_target_present=any(lid in baseline and lid not in baseline_mm for lid in scan),
        )
        for scan in scans[1:]
    ]
    verdicts = judge(baseline_mm, visits)
    best = best_response([v.response for v in verdicts])
    return Course(
        targets=targets,
        baseline_sod_mm=float(sum((Fraction(v) for v in baseline_mm.values()), Fraction(0))),
        verdicts=tuple(verdicts),
        best=best,
        label=int(is_responder(best)),
    )
