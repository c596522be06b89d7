"""The generator's own RECIST rules: apart from ``medseq.tracking``, and agreeing with it.

The synthetic ground truth is what tracking is scored against, so it must not be computed by
tracking's code. These tests prove the separation (no generator module imports tracking, and
importing the generator loads none of it) and cross-check the two statements of the rules on
hand-made cases (each with the answer ``shared/RECIST.md`` gives) and on seeded random ones.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import medseq.data.synthetic
from medseq.data.synthetic import recist_truth as rt
from medseq.tracking import recist as tr

SYNTHETIC = Path(medseq.data.synthetic.__file__).parent
ROOT = Path(__file__).resolve().parents[2]


def _imported(path: Path) -> set[str]:
    """Every module a file of the package imports (relative imports resolved)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            package = ["medseq", "data", "synthetic"]
            base = package[: len(package) - node.level + 1] if node.level else []
            names.add(".".join([*base, node.module or ""]).strip("."))
    return names


def test_no_generator_module_imports_tracking() -> None:
    modules = sorted(SYNTHETIC.glob("*.py"))
    assert SYNTHETIC / "truth.py" in modules
    for path in modules:
        tracking = {n for n in _imported(path) if n.split(".")[:2] == ["medseq", "tracking"]}
        assert not tracking, f"{path.name} imports {sorted(tracking)}"


def test_truth_module_states_its_rules_itself() -> None:
    imported = _imported(SYNTHETIC / "truth.py")
    assert "medseq.data.synthetic.recist_truth" in imported
    assert all(not n.startswith("medseq.tracking") for n in imported)


def test_importing_the_generator_loads_no_tracking_code() -> None:
    code = (
        "import sys\n"
        "import medseq.data.synthetic.analytic_course, medseq.data.synthetic.cohort\n"
        "print(sorted(m for m in sys.modules if m.startswith('medseq.tracking')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def _visit(new: bool = False, present: bool = False, progression: bool = False,
           **mm: float) -> tuple[rt.Visit, tr.FollowUp]:
    return (
        rt.Visit(mm, new_lesion=new, non_target_present=present,
                 non_target_progression=progression),
        tr.FollowUp(mm, new_lesions=new, non_targets_present=present,
                    non_target_progression=progression),
    )


HAND_MADE = [
    # RECIST.md's worked example: PR at -36%, then PD at +21.9% and +7 mm from the nadir.
    ({"a": 30.0, "b": 20.0}, [_visit(a=18, b=14), _visit(a=22, b=17)], (), "PR PD"),
    # Exactly -30% is PR; -29% is not.
    ({"a": 50.0}, [_visit(a=35.0)], (), "PR"),
    ({"a": 50.0}, [_visit(a=35.5)], (), "SD"),
    # Exactly +20% and exactly +5 mm over the nadir is PD; +20% with +4 mm, or +18%, is not.
    ({"a": 25.0}, [_visit(a=30.0)], (), "PD"),
    ({"a": 20.0}, [_visit(a=24.0)], (), "SD"),
    ({"a": 60.0}, [_visit(a=71.0)], (), "SD"),
    # The nadir, not the baseline, is the reference for PD.
    ({"a": 50.0}, [_visit(a=20.0), _visit(a=26.0)], (), "PR PD"),
    # A new lesion is PD however much the targets shrink; so is non-target progression.
    ({"a": 40.0}, [_visit(new=True, a=10.0)], (), "PD"),
    ({"a": 40.0}, [_visit(progression=True, a=30.0)], (), "PD"),
    # Every target gone: CR, or PR while a non-target persists; then regrowth from 0 is PD.
    ({"a": 30.0, "b": 12.0}, [_visit(a=0.0, b=0.0), _visit(a=0.0, b=6.0)], (), "CR PD"),
    ({"a": 30.0, "b": 12.0}, [_visit(a=0.0, b=3.0)], (), "PR"),
    ({"a": 20.0}, [_visit(present=True, a=0.0)], (), "PR"),
    ({"a": 20.0}, [_visit(a=0.0), _visit(a=6.0)], (), "CR PD"),
    ({"a": 20.0}, [_visit(a=0.0), _visit(a=4.0)], (), "CR PR"),
    # Lymph nodes: below 10 mm short axis counts as gone.
    ({"n": 20.0, "a": 15.0}, [_visit(n=9.5, a=0.0)], ("n",), "CR"),
    ({"n": 20.0, "a": 15.0}, [_visit(n=10.0, a=0.0)], ("n",), "PR"),
    # Without targets: NE, unless something else progresses.
    ({}, [_visit(), _visit(new=True)], (), "NE PD"),
    ({}, [_visit(present=True)], (), "NE"),
]


@pytest.mark.parametrize(("baseline", "visits", "nodal", "expected"), HAND_MADE)
def test_hand_made_courses(
    baseline: dict[str, float],
    visits: list[tuple[rt.Visit, tr.FollowUp]],
    nodal: tuple[str, ...],
    expected: str,
) -> None:
    ours = rt.judge(baseline, [v for v, _ in visits], nodal=nodal)
    theirs = tr.assess(baseline, [f for _, f in visits], nodal=dict.fromkeys(nodal, True))
    assert " ".join(v.response.value for v in ours) == expected
    assert [a.response.value for a in theirs] == expected.split()


@pytest.mark.parametrize(
    ("responses", "best"),
    [
        ("SD PR SD", "PR"), ("PR CR PD", "CR"), ("SD PD PR", "SD"), ("PD CR", "PD"),
        ("NE SD", "SD"), ("NE NE", "NE"), ("", "NE"), ("NE PD CR", "PD"),
    ],
)
def test_best_overall_response(responses: str, best: str) -> None:
    ours = rt.best_response([rt.Category(r) for r in responses.split()])
    theirs = tr.best_overall_response([tr.Response(r) for r in responses.split()])
    assert ours.value == theirs.value == best
    assert rt.is_responder(ours) == tr.is_responder(theirs) == (best in ("CR", "PR"))


def test_target_selection_example() -> None:
    lesions = [("a", 40.0, "liver"), ("b", 35.0, "liver"), ("c", 30.0, "liver"),
               ("d", 9.5, "lung"), ("e", 12.0, None), ("f", 12.0, None), ("g", 11.0, "lung"),
               ("h", 10.0, "spleen")]
    chosen = rt.choose_targets(
        [rt.Candidate(i, mm, mm / 2, organ) for i, mm, organ in lesions], slice_mm=5.0
    )
    # Two per organ (c is the liver's third), 9.5 mm is not measurable, at most five.
    assert chosen == ("a", "b", "e", "f", "g")


def _step(rng: np.random.Generator, previous: float, on_grid: bool) -> float:
    """A target's next measurement: gone, or a step that often lands on a threshold."""
    if rng.random() < 0.12:
        return 0.0
    if on_grid:
        factor = float(rng.choice([0.5, 0.7, 0.8, 1.0, 1.2, 1.25, 1.5]))
        return float(round(max(previous, 4.0) * factor * 2.0) / 2.0 + rng.choice([0, 0, 0.5]))
    return float(max(previous, 4.0) * rng.uniform(0.4, 1.6))


def test_random_courses_agree_with_tracking() -> None:
    rng = np.random.default_rng(20240611)
    counts: dict[str, int] = {}
    for _ in range(800):
        on_grid = bool(rng.random() < 0.6)
        ids = [f"T{i}" for i in range(int(rng.integers(0, 6)))]
        nodal = [t for t in ids if rng.random() < 0.2]
        baseline = {
            t: float(round(rng.uniform(10.0, 50.0) * 2.0) / 2.0) if on_grid
            else float(rng.uniform(10.0, 50.0))
            for t in ids
        }
        now = dict(baseline)
        ours_visits, theirs_visits = [], []
        for _ in range(int(rng.integers(1, 8))):
            now = {t: _step(rng, now[t], on_grid) for t in ids}
            ours, theirs = _visit(
                new=bool(rng.random() < 0.08), present=bool(rng.random() < 0.3),
                progression=bool(rng.random() < 0.03), **now,
            )
            ours_visits.append(ours)
            theirs_visits.append(theirs)
        ours_out = rt.judge(baseline, ours_visits, nodal=nodal)
        theirs_out = tr.assess(baseline, theirs_visits, nodal=dict.fromkeys(nodal, True))
        for o, t in zip(ours_out, theirs_out, strict=True):
            assert o.response.value == t.response.value, (baseline, ours_visits, nodal)
            assert o.sod_mm == pytest.approx(t.sod_mm, abs=1e-9)
            assert o.nadir_mm == pytest.approx(t.nadir_mm, abs=1e-9)
            assert o.change_from_baseline_pct == pytest.approx(t.change_from_baseline_pct)
            counts[o.response.value] = counts.get(o.response.value, 0) + 1
        ours_best = rt.best_response([o.response for o in ours_out])
        theirs_best = tr.best_overall_response([t.response for t in theirs_out])
        assert ours_best.value == theirs_best.value
    # Every category, and plenty of each, was exercised.
    assert set(counts) == {"CR", "PR", "SD", "PD", "NE"}
    assert min(counts.values()) >= 30


def test_random_target_selections_agree_with_tracking() -> None:
    rng = np.random.default_rng(7)
    organs = ["liver", "lung", "spleen", None]
    for _ in range(800):
        slice_mm = float(rng.choice([1.0, 2.5, 5.0, 7.0]))
        lesions = []
        for n in range(int(rng.integers(0, 10))):
            longest = float(round(rng.uniform(4.0, 40.0) * 2.0) / 2.0)
            short = float(round(rng.uniform(0.3, 1.0) * longest * 2.0) / 2.0)
            lesions.append((f"L{n}", longest, short, organs[int(rng.integers(0, 4))],
                            bool(rng.random() < 0.2)))
        ours = rt.choose_targets(
            [rt.Candidate(i, lo, sh, org, nod) for i, lo, sh, org, nod in lesions],
            slice_mm=slice_mm,
        )
        theirs = tr.select_targets(
            [tr.BaselineLesion(i, lo, sh, nod, org) for i, lo, sh, org, nod in lesions],
            slice_thickness_mm=slice_mm,
        )
        assert list(ours) == [t.lesion_id for t in theirs], (lesions, slice_mm)
