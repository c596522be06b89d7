"""RECIST 1.1 rules, one test per rule (shared/RECIST.md)."""

from __future__ import annotations

import pytest

from medseq.tracking.recist import (
    BaselineLesion,
    FollowUp,
    Response,
    assess,
    best_overall_response,
    is_measurable,
    is_responder,
    select_targets,
    volumetric_category,
    volumetric_changes,
)


def _fu(new: bool = False, **mm: float) -> FollowUp:
    return FollowUp(diameters_mm=mm, new_lesions=new)


def test_worked_example_pr_then_pd_from_nadir() -> None:
    a1, a2 = assess({"a": 30.0, "b": 20.0}, [_fu(a=18, b=14), _fu(a=22, b=17)])
    assert a1.sod_mm == 32.0
    assert a1.change_from_baseline_pct == pytest.approx(-36.0)
    assert a1.response is Response.PR
    assert a2.nadir_mm == 32.0
    assert a2.change_from_nadir_pct == pytest.approx(21.875)
    assert a2.change_from_baseline_pct == pytest.approx(-22.0)
    assert a2.response is Response.PD


def test_pd_needs_five_mm_absolute_increase() -> None:
    # +25% from a 16 mm nadir is only +4 mm: not PD.
    (small,) = assess({"a": 16.0}, [_fu(a=20.0)])
    assert small.change_from_nadir_pct == pytest.approx(25.0)
    assert small.response is Response.SD
    (enough,) = assess({"a": 20.0}, [_fu(a=25.0)])
    assert enough.response is Response.PD


def test_pd_needs_twenty_percent() -> None:
    (a,) = assess({"a": 60.0}, [_fu(a=71.0)])  # +11 mm but +18%
    assert a.response is Response.SD


def test_new_lesion_forces_pd_while_sod_shrinks() -> None:
    (a,) = assess({"a": 40.0}, [_fu(new=True, a=10.0)])
    assert a.change_from_baseline_pct == pytest.approx(-75.0)
    assert a.response is Response.PD
    assert "new lesion" in a.reasons


def test_pd_from_nadir_while_still_below_baseline() -> None:
    results = assess({"a": 50.0}, [_fu(a=20.0), _fu(a=26.0)])
    assert [r.response for r in results] == [Response.PR, Response.PD]
    assert results[1].change_from_baseline_pct == pytest.approx(-48.0)


def test_cr_requires_every_non_nodal_target_gone() -> None:
    done, almost = assess({"a": 30.0, "b": 12.0}, [_fu(a=0.0, b=0.0), _fu(a=0.0, b=3.0)])
    assert done.response is Response.CR
    assert almost.response is Response.PR


def test_cr_with_nodes_under_ten_mm() -> None:
    nodal = {"n": True, "a": False}
    (a,) = assess({"n": 20.0, "a": 15.0}, [_fu(n=9.5, a=0.0)], nodal=nodal)
    assert a.response is Response.CR
    (b,) = assess({"n": 20.0, "a": 15.0}, [_fu(n=10.0, a=0.0)], nodal=nodal)
    assert b.response is Response.PR


def test_cr_targets_with_non_targets_left_is_pr() -> None:
    fu = FollowUp(diameters_mm={"a": 0.0}, non_targets_present=True)
    (a,) = assess({"a": 20.0}, [fu])
    assert a.response is Response.PR


def test_non_target_progression_is_pd() -> None:
    fu = FollowUp(diameters_mm={"a": 20.0}, non_target_progression=True)
    assert assess({"a": 20.0}, [fu])[0].response is Response.PD


def test_reappearing_target_after_cr_is_pd() -> None:
    results = assess({"a": 20.0}, [_fu(a=0.0), _fu(a=4.0), _fu(a=6.0)])
    # 4 mm over a 0 mm nadir is under the 5 mm floor (PR against baseline); 6 mm is PD.
    assert [r.response for r in results] == [Response.CR, Response.PR, Response.PD]


def test_no_targets_is_ne_unless_new_lesions() -> None:
    none, new = assess({}, [_fu(), _fu(new=True)])
    assert none.response is Response.NE
    assert new.response is Response.PD


def test_missing_target_is_an_error() -> None:
    with pytest.raises(ValueError, match="lacks targets"):
        assess({"a": 10.0, "b": 10.0}, [_fu(a=5.0)])


def test_measurability_limits() -> None:
    lesion = BaselineLesion("a", longest_diameter_mm=9.9, short_axis_mm=5.0)
    assert not is_measurable(lesion, slice_thickness_mm=2.5)
    lesion = BaselineLesion("a", longest_diameter_mm=10.0, short_axis_mm=5.0)
    assert is_measurable(lesion, slice_thickness_mm=5.0)
    # Thick slices: the minimum is twice the slice thickness.
    assert not is_measurable(lesion, slice_thickness_mm=6.0)
    node = BaselineLesion("n", longest_diameter_mm=30.0, short_axis_mm=14.0, nodal=True)
    assert not is_measurable(node, slice_thickness_mm=1.0)
    node = BaselineLesion("n", longest_diameter_mm=20.0, short_axis_mm=15.0, nodal=True)
    assert is_measurable(node, slice_thickness_mm=1.0)


def test_lesion_below_measurability_is_not_a_target() -> None:
    lesions = [BaselineLesion("big", 25.0, 15.0), BaselineLesion("small", 8.0, 6.0)]
    assert [t.lesion_id for t in select_targets(lesions, slice_thickness_mm=1.0)] == ["big"]


def test_select_at_most_five_and_two_per_organ() -> None:
    lesions = [BaselineLesion(f"l{i}", 40.0 - i, 10.0, organ="liver" if i < 4 else None)
               for i in range(8)]
    chosen = [t.lesion_id for t in select_targets(lesions, slice_thickness_mm=1.0)]
    assert chosen == ["l0", "l1", "l4", "l5", "l6"]
    without_organs = [BaselineLesion(f"l{i}", 40.0 - i, 10.0) for i in range(8)]
    assert len(select_targets(without_organs, slice_thickness_mm=1.0)) == 5


def test_nodal_targets_ranked_by_short_axis() -> None:
    lesions = [BaselineLesion("n", 40.0, 16.0, nodal=True), BaselineLesion("a", 20.0, 10.0)]
    chosen = select_targets(lesions, slice_thickness_mm=1.0)
    assert [t.lesion_id for t in chosen] == ["a", "n"]


def test_best_overall_response_stops_at_progression() -> None:
    assert best_overall_response([Response.SD, Response.PR, Response.PD, Response.CR]) is (
        Response.PR)
    assert best_overall_response([Response.PD, Response.CR]) is Response.PD
    assert best_overall_response([Response.NE, Response.SD]) is Response.SD
    assert best_overall_response([]) is Response.NE
    assert is_responder(Response.CR)
    assert is_responder(Response.PR)
    assert not is_responder(Response.SD)


def test_volumetric_changes_from_baseline_and_nadir() -> None:
    changes = volumetric_changes([10.0, 5.0, 8.0])
    assert changes[0] == pytest.approx((-50.0, -50.0))
    assert changes[1] == pytest.approx((-20.0, 60.0))
    assert volumetric_changes([]) == []


def test_volumetric_categories() -> None:
    # -65% is PR, +73% from the nadir is PD, 0 mL is CR.
    cats = volumetric_category([10.0, 3.5, 3.4, 5.9, 0.0])
    assert cats == [Response.PR, Response.PR, Response.PD, Response.CR]
    assert volumetric_category([10.0, 4.0]) == [Response.SD]
    assert volumetric_category([10.0, 5.0], new_lesions=[True]) == [Response.PD]
    assert volumetric_category([0.0, 1.0], new_lesions=[False]) == [Response.NE]
