"""Everything random about one patient, drawn up front from the cohort seed.

A :class:`PatientPlan` fixes anatomy, lesions and their courses, scan dates, repositioning and
voxel grids. Rendering and ground truth are deterministic functions of the plan, so the same
seed gives the same cohort whatever the number of workers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import numpy as np

from medseq.data.synthetic import portable
from medseq.data.synthetic.dynamics import (
    NEW_LESION_ML,
    LesionCourse,
    PatientDynamics,
    new_lesion_days,
    sample_patient_dynamics,
    simulate_course,
)
from medseq.data.synthetic.geometry import Grid, axial_grid, rigid, rotation_matrix
from medseq.data.synthetic.lesions import LesionShape, sample_shape
from medseq.data.synthetic.phantom import (
    ORGANS,
    Anatomy,
    Ellipsoid,
    Enhancement,
    sample_anatomy,
    sample_bowel_gas,
    sample_enhancement,
)


@dataclass(frozen=True)
class SizeSpec:
    """Grid of one ``--size``: voxel counts, in-plane field of view range, slice thickness."""

    name: str
    shape: tuple[int, int, int]
    fov_mm: tuple[float, float]
    slice_mm: float
    noise_hu: float


SIZES = {
    "small": SizeSpec("small", (96, 96, 48), (370.0, 410.0), 5.0, 4.0),
    "medium": SizeSpec("medium", (192, 192, 96), (370.0, 410.0), 2.5, 10.0),
    "large": SizeSpec("large", (512, 512, 240), (360.0, 400.0), 1.0, 18.0),
}
"""Every size covers the same 240 mm of body in z (chest base to pelvis top)."""

Z_LIMIT_MM = 100.0
"""Lesions (at their largest) stay within this distance of the body-frame z = 0 plane, so
repositioning never pushes them out of the scanned range."""

ORGAN_WEIGHTS = {
    "liver": 4.0, "lung_right": 2.0, "lung_left": 2.0, "kidney_right": 1.0,
    "kidney_left": 1.0, "spleen": 1.0,
}


@dataclass(frozen=True)
class LesionPlan:
    """A lesion's identity, host organ, shape and course."""

    lesion_id: str
    organ: str
    shape: LesionShape
    course: LesionCourse


@dataclass(frozen=True)
class ScanPlan:
    """One timepoint: date, repositioning, grid, contrast and bowel gas."""

    name: str
    date: dt.date
    days: int
    motion: np.ndarray
    """4x4: baseline world RAS+ mm -> this scan's world RAS+ mm."""
    grid: Grid
    enhancement: Enhancement
    bowel_gas: tuple[Ellipsoid, ...]
    localizer: bool
    acquisition_minutes: int
    """Minutes after 07:00 at which the scan started."""


@dataclass(frozen=True)
class PatientPlan:
    """One synthetic patient."""

    index: int
    patient_id: str
    fmt: str
    size: SizeSpec
    couch: np.ndarray
    """Baseline world position of the body-frame origin."""
    anatomy: Anatomy
    dynamics: PatientDynamics
    lesions: tuple[LesionPlan, ...]
    scans: tuple[ScanPlan, ...]
    signed_pixels: bool
    """DICOM pixel representation: int16 (True) or uint16 (False)."""

    def body_to_world(self, t: int) -> np.ndarray:
        """4x4 body frame -> scan ``t`` world."""
        shift = np.eye(4)
        shift[:3, 3] = self.couch
        return portable.matmul(self.scans[t].motion, shift)


def patient_id(index: int) -> str:
    """The synthetic patient ID of cohort member ``index`` (0-based)."""
    return f"SYN{index + 1:04d}"


def plan_patient(
    index: int,
    *,
    seed: int,
    size: SizeSpec,
    fmt: str,
    timepoints: tuple[int, int],
    lesions: tuple[int, int],
    repositioning_mm: float | None,
) -> PatientPlan:
    """Draw patient ``index`` of the cohort ``seed``.

    Separate random streams feed the anatomy, the disease course, the lesion shapes and places,
    the scan sessions and the size-dependent grid, so changing one part of the model leaves the
    others' draws alone, and a seed gives the same patients (dates, lesions, courses) at every
    size.
    """

    def stream(part: int, *extra: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([seed, index, part, *extra]))

    rng = stream(5)  # disease course and schedule
    grid_rng = stream(2, *size.shape)
    session_rng = stream(7)
    anatomy = sample_anatomy(stream(1))
    dynamics = sample_patient_dynamics(rng)
    n_scans = int(rng.integers(timepoints[0], timepoints[1] + 1))
    scan_days = _scan_days(rng, n_scans)
    baseline_date = dt.date(2019, 1, 1) + dt.timedelta(days=int(rng.integers(0, 5 * 365)))
    lesion_plans = _plan_lesions(rng, stream(6), anatomy, dynamics, scan_days, lesions)
    couch = np.array([0.0, 0.0, float(session_rng.uniform(-450.0, -250.0))])
    fov = float(grid_rng.uniform(*size.fov_mm))
    spacing = (fov / size.shape[0], fov / size.shape[1], size.slice_mm)
    scans = []
    for t, day in enumerate(scan_days):
        motion = np.eye(4) if t == 0 else _motion(session_rng, couch, repositioning_mm)
        centre = np.array([0.0, -18.0, couch[2] + float(session_rng.normal(0.0, 4.0))])
        grid = axial_grid(shape=size.shape, spacing=spacing, centre=centre, lps=fmt == "dicom")
        scans.append(
            ScanPlan(
                name=f"t{t}",
                date=baseline_date + dt.timedelta(days=day),
                days=day,
                motion=motion,
                grid=grid,
                enhancement=sample_enhancement(session_rng),
                bowel_gas=tuple(sample_bowel_gas(session_rng, anatomy)),
                localizer=bool(session_rng.random() < 0.5),
                acquisition_minutes=int(session_rng.integers(0, 11 * 60)),
            )
        )
    return PatientPlan(
        index=index,
        patient_id=patient_id(index),
        fmt=fmt,
        size=size,
        couch=couch,
        anatomy=anatomy,
        dynamics=dynamics,
        lesions=tuple(lesion_plans),
        scans=tuple(scans),
        signed_pixels=bool(session_rng.random() < 0.5),
    )


def _scan_days(rng: np.random.Generator, n_scans: int) -> list[int]:
    days = [0]
    for _ in range(n_scans - 1):
        gap = rng.uniform(42.0, 84.0) + rng.normal(0.0, 4.0)
        days.append(days[-1] + max(28, round(gap)))
    return days


def _motion(rng: np.random.Generator, couch: np.ndarray, limit_mm: float | None) -> np.ndarray:
    """Rigid repositioning about the body centre: a few degrees and a few mm."""
    scale = 1.0 if limit_mm is None else limit_mm / 8.0
    angles = np.clip(rng.normal(0.0, 1.5, 3), -4.0, 4.0) * min(scale, 1.0)
    shift = np.clip(rng.normal(0.0, 3.5, 3), -8.0, 8.0) * scale
    if limit_mm is not None and limit_mm <= 0:
        return np.eye(4)
    return rigid(rotation_matrix(angles), shift, centre=couch)


def _plan_lesions(
    rng: np.random.Generator,
    place_rng: np.random.Generator,
    anatomy: Anatomy,
    dynamics: PatientDynamics,
    scan_days: list[int],
    count: tuple[int, int],
) -> list[LesionPlan]:
    n = int(rng.integers(count[0], count[1] + 1))
    organs = _choose_organs(rng, n)
    plans: list[LesionPlan] = []
    for number, organ in enumerate(organs):
        diameter = (
            rng.uniform(18.0, 40.0) if number == 0
            else portable.exp(rng.uniform(*portable.log([8.0, 35.0])))
        )
        initial = float(np.pi / 6.0 * portable.power(diameter, 3) / 1000.0)
        course = simulate_course(
            rng, organ=organ, patient=dynamics, scan_days=scan_days, appear_day=0,
            initial_ml=initial,
        )
        near = number > 0 and place_rng.random() < 0.35
        shape = _place(place_rng, anatomy, organ, course, plans, near=near)
        for _ in range(5):
            if shape is not None or plans:
                break
            # Every patient keeps at least one (measurable) lesion: fall back to the liver.
            organ = "liver"
            shape = _place(place_rng, anatomy, organ, course, plans, near=False)
        if shape is None and not plans:
            shape = replace(sample_shape(place_rng, anatomy.organs["liver"].centre))
        if shape is not None:
            plans.append(LesionPlan(f"L{len(plans) + 1}", organ, shape, course))
    for day in new_lesion_days(rng, dynamics, scan_days[-1]):
        organ = str(rng.choice(ORGANS))
        course = simulate_course(
            rng, organ=organ, patient=dynamics, scan_days=scan_days, appear_day=day,
            initial_ml=float(rng.uniform(*NEW_LESION_ML)), sensitivity_offset=-0.8,
        )
        shape = _place(place_rng, anatomy, organ, course, plans, near=False)
        if shape is not None:
            plans.append(LesionPlan(f"L{len(plans) + 1}", organ, shape, course))
    return plans


def _choose_organs(rng: np.random.Generator, n: int) -> list[str]:
    """Up to two lesions per organ, so RECIST's two-per-organ rule never drops a target."""
    names = list(ORGAN_WEIGHTS)
    chosen: list[str] = []
    while len(chosen) < n:
        w = np.array([0.0 if chosen.count(o) >= 2 else ORGAN_WEIGHTS[o] for o in names])
        if w.sum() == 0:
            break
        chosen.append(str(rng.choice(names, p=w / w.sum())))
    return chosen


def _place(
    rng: np.random.Generator,
    anatomy: Anatomy,
    organ: str,
    course: LesionCourse,
    others: list[LesionPlan],
    *,
    near: bool,
) -> LesionShape | None:
    """Pick a centre inside ``organ``, inside the scanned range, clear of the other lesions.

    With ``near``, the lesion goes a few mm from the previous lesion of the same organ.
    """
    host = anatomy.organs[organ]
    template = sample_shape(rng, host.centre)
    peak_reach = template.max_radius * template.scale_for(max(course.volumes_ml))
    now = template.max_radius * template.scale_for(course.volumes_ml[0])
    neighbours = [p for p in others if p.organ == organ]
    anchor = neighbours[-1] if near and neighbours else None
    for attempt in range(80):
        if anchor is not None and attempt < 40:
            a_now = anchor.shape.max_radius * anchor.shape.scale_for(anchor.course.volumes_ml[0])
            direction = rng.normal(size=3)
            direction /= portable.norm(direction)
            centre = anchor.shape.centre + direction * (now + a_now + rng.uniform(3.0, 9.0))
            if host.contains(centre) > 0.9:
                continue
        else:
            u = rng.normal(size=3)
            u *= portable.cbrt(rng.uniform()) * 0.6 / portable.norm(u)
            centre = host.centre + portable.matmul(host.rotation, u * host.radii)
        if abs(centre[2]) + peak_reach > Z_LIMIT_MM:
            continue
        if all(_clear(centre, peak_reach, now, other, other is anchor) for other in others):
            return replace(template, centre=centre)
    return None


def _clear(
    centre: np.ndarray, reach: float, now: float, other: LesionPlan, is_anchor: bool
) -> bool:
    shape = other.shape
    gap = float(portable.norm(centre - shape.centre))
    o_now = shape.max_radius * shape.scale_for(other.course.volumes_ml[0])
    if is_anchor:
        return gap > now + o_now + 2.0
    o_reach = shape.max_radius * shape.scale_for(max(other.course.volumes_ml))
    return gap > max(reach + o_reach, now + o_now + 10.0)
