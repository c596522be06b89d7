"""Early-prediction labels: every rule of ``medseq.training.targets`` on hand-made courses."""

from __future__ import annotations

import pytest

from medseq.contracts.tracks import PatientTracking, Response, ResponseRow
from medseq.training.targets import Exclusion, LabelSpec, Target, early_target

CR, PR, SD, PD, NE = Response.CR, Response.PR, Response.SD, Response.PD, Response.NE
NEW = "new"
"""A scan with a new lesion (its SOD category SD): PD by RECIST."""


def course(*scans: tuple[int, Response | str | None], mask: bool = True,
           tracked: bool = True, pid: str = "P") -> PatientTracking:
    """A patient from (days, response) per scan; the first is the baseline."""
    rows = [ResponseRow(
        patient_id=pid, timepoint=t, days=days, lesions=1, targets=1, sod_mm=10.0,
        change_from_baseline_pct=None, change_from_nadir_pct=None, nadir_mm=10.0,
        new_lesions=response == NEW, response=SD if response == NEW else response, reasons=(),
        target_volume_ml=None, volume_change_from_baseline_pct=None,
        volume_change_from_nadir_pct=None, volumetric_response=None, total_volume_ml=None,
    ) for t, (days, response) in enumerate(scans)]
    return PatientTracking(patient_id=pid, has_mask=mask, tracked=tracked,
                           best_overall_response=SD, responses=rows)


def target(patient: PatientTracking, kind: str, observe: int | None = 2, *,
           task: str = "binary", **landmark: float) -> Target | Exclusion:
    return early_target(patient, LabelSpec(kind=kind, observe=observe, **landmark), task=task)


# ----------------------------------------------------------------------------- every kind

@pytest.mark.parametrize("kind", ["best_after", "landmark", "progression"])
@pytest.mark.parametrize("seen", [PD, NEW])
def test_progression_in_the_observed_scans_decides_every_kind(kind: str, seen: str) -> None:
    patient = course((0, None), (60, SD), (120, seen), (180, PR))
    assert target(patient, kind, observe=3) == Exclusion(
        "progression already seen by scan 2", determined=True)


@pytest.mark.parametrize("kind", ["best_after", "landmark", "progression"])
def test_untracked_or_maskless_patients_have_no_label(kind: str) -> None:
    scans = ((0, None), (60, SD), (120, PR))
    assert target(course(*scans, mask=False), kind) == Exclusion("no lesion mask", False)
    assert target(course(*scans, tracked=False), kind) == Exclusion("not tracked", False)


@pytest.mark.parametrize(("kind", "observe", "task"), [
    ("overall", 2, "binary"), ("given", 2, "binary"), ("best_after", None, "binary"),
    ("progression", 2, "recist"),
])
def test_bad_specs_are_value_errors(kind: str, observe: int | None, task: str) -> None:
    with pytest.raises(ValueError, match=kind if observe else "needs observe"):
        target(course((0, None), (60, SD), (120, PR)), kind, observe, task=task)


# ----------------------------------------------------------------------------- best_after

@pytest.mark.parametrize("seen", [CR, PR])
@pytest.mark.parametrize("kind", ["best_after", "landmark"])
def test_response_in_the_observed_scans_decides_response_kinds(kind: str, seen: Response) -> None:
    patient = course((0, None), (60, seen), (120, SD), (180, SD))
    assert target(patient, kind) == Exclusion("response already seen by scan 1", True)


@pytest.mark.parametrize(("after", "binary", "recist"), [
    ([SD, PR, CR], 1, 0),       # best of CR > PR > SD
    ([SD, PR, PD], 1, 1),       # PR before the PD counts
    ([SD, PD, CR], 0, 2),       # nothing after the first PD counts
    ([PD, PR], 0, 3),           # the first evaluable after-scan is PD
    ([NE, None, PD, CR], 0, 3),  # NE skipped
    ([SD, NEW, PR], 0, 2),      # a new lesion is PD
    ([NE, SD], 0, 2),
])
def test_best_after_is_the_best_response_after_the_observed_scans(
    after: list[Response | str | None], binary: int, recist: int
) -> None:
    patient = course((0, None), (60, SD), *[(120 + 60 * i, r) for i, r in enumerate(after)])
    assert target(patient, "best_after") == Target(binary)
    assert target(patient, "best_after", task="recist") == Target(recist)


def test_best_after_needs_an_evaluable_scan_after_the_observed_ones() -> None:
    assert target(course((0, None), (60, SD)), "best_after") == Exclusion(
        "no scan after the first 2", False)
    assert target(course((0, None), (60, SD), (120, NE)), "best_after") == Exclusion(
        "no evaluable scan after the first 2", False)
    # Fewer scans than observed: nothing comes after.
    assert target(course((0, None), (60, SD)), "best_after", observe=3) == Exclusion(
        "no scan after the first 3", False)


# ------------------------------------------------------------------------------- landmark

def test_landmark_takes_the_scan_nearest_the_landmark_day() -> None:
    patient = course((0, None), (60, SD), (150, SD), (190, PR), (260, SD))
    assert target(patient, "landmark") == Target(1)
    assert target(patient, "landmark", task="recist") == Target(1)
    # Landmark day 250 within 45: only day 260 qualifies.
    assert target(patient, "landmark", landmark_days=250) == Target(0)


def test_landmark_ties_go_to_the_earlier_scan_and_ne_is_skipped() -> None:
    tie = course((0, None), (60, SD), (160, PR), (200, SD))
    assert target(tie, "landmark") == Target(1)
    skipped = course((0, None), (60, SD), (170, NE), (200, SD))
    assert target(skipped, "landmark", task="recist") == Target(2)


def test_progression_before_the_landmark_makes_it_pd() -> None:
    before_window = course((0, None), (60, SD), (100, PD))  # follow-up ends with PD
    assert target(before_window, "landmark", task="recist") == Target(3)
    before_scan = course((0, None), (60, SD), (150, NEW), (180, PR))
    assert target(before_scan, "landmark", task="recist") == Target(3)
    assert target(before_scan, "landmark") == Target(0)


def test_landmark_needs_a_scan_in_the_window() -> None:
    expected = Exclusion("no scan within 45 days of day 180", False)
    assert target(course((0, None), (60, SD), (120, SD), (240, PR)), "landmark") == expected
    # PD after the window does not count: it happened after the landmark.
    assert target(course((0, None), (60, SD), (120, SD), (240, PD)), "landmark") == expected
    assert target(course((0, None), (60, SD), (100, SD)), "landmark",
                  landmark_days=90, landmark_window_days=7.5) == Exclusion(
        "no scan within 7.5 days of day 90", False)


# ---------------------------------------------------------------------------- progression

def test_progression_time_is_from_the_last_observed_scan() -> None:
    progressed = course((0, None), (60, SD), (130, SD), (200, NEW), (260, PD))
    assert target(progressed, "progression") == Target(1, time_days=140.0, event=True)
    censored = course((0, None), (60, SD), (130, PR), (200, NE))
    assert target(censored, "progression") == Target(0, time_days=140.0, event=False)


def test_observed_response_does_not_decide_progression() -> None:
    patient = course((0, None), (60, PR), (130, PD))
    assert target(patient, "progression") == Target(1, time_days=70.0, event=True)


def test_progression_needs_follow_up() -> None:
    assert target(course((0, None), (60, SD)), "progression") == Exclusion(
        "no follow-up after the first 2 scans", False)
    same_day = course((0, None), (60, SD), (60, SD))
    assert target(same_day, "progression") == Exclusion(
        "no follow-up after the first 2 scans", False)
