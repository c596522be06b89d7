"""Ground truth of one patient: rasterised lesion masks, their measurements and RECIST.

Lesion masks are rasterised at voxel centres on each scan's own grid. Two lesions never share or
touch voxels: a later lesion gives up the voxels 26-adjacent to an earlier one and keeps only its
largest 26-connected piece, so every lesion is exactly one connected component of the binary
mask a segmentation tool would produce. All measurements come from these masks, and the RECIST
course from :mod:`.recist_truth`, the generator's own statement of the rules: nothing here uses
:mod:`medseq.tracking`, the code this truth is meant to test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medseq.data.synthetic import portable
from medseq.data.synthetic.geometry import apply
from medseq.data.synthetic.lesions import rasterise
from medseq.data.synthetic.measure import Measurement, measure
from medseq.data.synthetic.plan import LesionPlan, PatientPlan
from medseq.data.synthetic.recist_truth import Category, Seen, Verdict, patient_course

_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class LesionTruth:
    """One lesion as it appears on one scan."""

    plan: LesionPlan
    measurement: Measurement
    new: bool
    offset: tuple[int, int, int]
    inside: np.ndarray


@dataclass(frozen=True)
class ScanTruth:
    """Every lesion present on one scan."""

    lesions: tuple[LesionTruth, ...]


@dataclass(frozen=True)
class PatientTruth:
    """Per-scan lesions and the RECIST course of one patient."""

    scans: tuple[ScanTruth, ...]
    targets: tuple[str, ...]
    baseline_sod_mm: float
    assessments: tuple[Verdict, ...]
    """One per follow-up."""
    best_response: Category
    label: int


def patient_truth(plan: PatientPlan) -> PatientTruth:
    """Rasterise and measure every lesion at every scan, then apply RECIST 1.1."""
    scans = tuple(scan_truth(plan, t) for t in range(len(plan.scans)))
    course = patient_course(
        [
            {
                les.plan.lesion_id: Seen(
                    les.measurement.longest_diameter_mm, les.measurement.short_axis_mm
                )
                for les in scan.lesions
            }
            for scan in scans
        ],
        organs={les.lesion_id: les.organ for les in plan.lesions},
        slice_mm=plan.scans[0].grid.spacing[2],
    )
    return PatientTruth(
        scans=scans,
        targets=course.targets,
        baseline_sod_mm=course.baseline_sod_mm,
        assessments=course.verdicts,
        best_response=course.best,
        label=course.label,
    )


def scan_truth(plan: PatientPlan, t: int) -> ScanTruth:
    """Rasterise the lesions present at scan ``t`` (in plan order) and measure them."""
    scan = plan.scans[t]
    grid = scan.grid
    body_to_world = plan.body_to_world(t)
    taken: list[tuple[tuple[int, int, int], np.ndarray]] = []
    out: list[LesionTruth] = []
    for lesion in plan.lesions:
        volume = lesion.course.volumes_ml[t]
        if volume <= 0.0:
            continue
        hit = rasterise(lesion.shape, lesion.shape.scale_for(volume), grid, body_to_world)
        if hit is None:
            continue
        offset, inside = hit
        blocked = _occupied(offset, inside.shape, taken)
        if blocked.any():
            inside = inside & ~ndimage.binary_dilation(blocked, structure=_STRUCTURE_26)
        inside = _largest_component(inside)
        if not inside.any():
            continue
        taken.append((offset, inside))
        out.append(
            LesionTruth(
                plan=lesion,
                measurement=measure(inside, offset, grid.affine),
                new=lesion.course.appear_day > 0,
                offset=offset,
                inside=inside,
            )
        )
    return ScanTruth(tuple(out))


def label_volume(truth: ScanTruth, shape: tuple[int, int, int]) -> np.ndarray:
    """The binary uint8 mask (1 = lesion) on the scan's grid."""
    mask = np.zeros(shape, dtype=np.uint8)
    for les in truth.lesions:
        i, j, k = les.offset
        a, b, c = les.inside.shape
        mask[i:i + a, j:j + b, k:k + c][les.inside] = 1
    return mask


def baseline_point(plan: PatientPlan, t: int, point: tuple[float, float, float]) -> np.ndarray:
    """Map a point of scan ``t``'s world into the baseline world."""
    return apply(portable.affine_inverse(plan.scans[t].motion), np.asarray(point))


def _occupied(
    offset: tuple[int, int, int],
    shape: tuple[int, ...],
    taken: list[tuple[tuple[int, int, int], np.ndarray]],
) -> np.ndarray:
    """Voxels of earlier lesions inside the block at ``offset`` of ``shape``."""
    out = np.zeros(shape, dtype=bool)
    for o_off, o_inside in taken:
        lo = [max(offset[a], o_off[a]) for a in range(3)]
        hi = [min(offset[a] + shape[a], o_off[a] + o_inside.shape[a]) for a in range(3)]
        if any(h <= lo_ for lo_, h in zip(lo, hi, strict=True)):
            continue
        mine = tuple(slice(lo[a] - offset[a], hi[a] - offset[a]) for a in range(3))
        theirs = tuple(slice(lo[a] - o_off[a], hi[a] - o_off[a]) for a in range(3))
        out[mine] |= o_inside[theirs]
    return out


def _largest_component(inside: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(inside, structure=_STRUCTURE_26)
    if n <= 1:
        return inside
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    return labels == int(np.argmax(counts))
