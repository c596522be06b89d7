"""The recorded synthetic truth against the lesions' analytic geometry (no mask involved).

The mask measurements and RECIST categories of ``ground_truth.json`` are checked against what
each lesion's shape gives on the scan's slice planes: every mask diameter within the stated
discretisation bounds, every recorded category among those the bounds allow, and equal to the
analytic category wherever voxelisation could not flip it.
"""

from __future__ import annotations

import numpy as np
import pytest

from medseq.data.synthetic.analytic import (
    CHORD_ERROR_MM,
    sample_surface,
    section_diameters,
    surfaces_apart,
)
from medseq.data.synthetic.analytic_course import (
    ABOVE_VOXELS,
    BELOW_VOXELS,
    AnalyticCourse,
    analytic_course,
)
from medseq.data.synthetic.cohort import CohortSpec
from medseq.data.synthetic.geometry import axial_grid, rotation_matrix
from medseq.data.synthetic.lesions import LesionShape
from medseq.data.synthetic.truth import PatientTruth, patient_truth

GRID = axial_grid(shape=(80, 80, 41), spacing=(1.0, 1.0, 1.0), centre=np.zeros(3), lps=False)
"""1 mm voxels, slice planes at z = -20, -19, ..., 20."""


def _ellipsoid(radii: tuple[float, float, float], angles_deg: tuple[float, float, float],
               centre: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> LesionShape:
    """A plain ellipsoid (no lobulation) with the given semi-axes and orientation."""
    return LesionShape(
        centre=np.asarray(centre, dtype=np.float64),
        radii=np.asarray(radii, dtype=np.float64),
        rotation=rotation_matrix(np.asarray(angles_deg, dtype=np.float64)),
        lobe_k=np.array([[1.0, 0.0, 0.0]]),
        lobe_amp=np.array([0.0]),
        lobe_phase=np.array([0.0]),
        tex_k=np.zeros((1, 3)),
        tex_phase=np.zeros(1),
        unit_volume_ml=4.0 / 3.0 * np.pi * float(np.prod(radii)) / 1000.0,
    )


@pytest.mark.parametrize(
    ("radii", "angles", "centre", "longest", "short"),
    [
        # Axes in the axial plane, turned about z: the section is the full 24 x 16 ellipse.
        ((12.0, 8.0, 6.0), (0.0, 0.0, 30.0), (0.0, 0.0, 0.0), 24.0, 16.0),
        # Tipped 90 degrees about x: the 8 mm axis goes vertical, the 6 mm one lies flat.
        ((12.0, 8.0, 6.0), (90.0, 0.0, 0.0), (0.0, 0.0, 0.0), 24.0, 12.0),
        # Centre 0.4 mm above a plane: the largest section is 0.4 mm off the equator.
        ((12.0, 8.0, 6.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.4), 24.0 * np.sqrt(1 - 0.4**2 / 36),
         16.0 * np.sqrt(1 - 0.4**2 / 36)),
    ],
)
def test_sections_of_an_ellipsoid(
    radii: tuple[float, float, float],
    angles: tuple[float, float, float],
    centre: tuple[float, float, float],
    longest: float,
    short: float,
) -> None:
    shape = _ellipsoid(radii, angles, centre)
    section = section_diameters(shape, 1.0, np.eye(4), GRID)
    assert section is not None
    assert section.longest_mm == pytest.approx(longest, abs=0.02)
    assert section.short_mm == pytest.approx(short, abs=0.1)


def test_section_follows_scale_and_repositioning() -> None:
    shape = _ellipsoid((12.0, 8.0, 6.0), (0.0, 0.0, 0.0))
    half = section_diameters(shape, 0.5, np.eye(4), GRID)
    assert half is not None
    assert half.longest_mm == pytest.approx(12.0, abs=0.02)
    # Rolling the body 90 degrees about y stands the 12 mm axis up: the axial section is 16 x 12.
    roll = np.eye(4)
    roll[:3, :3] = rotation_matrix(np.array([0.0, 90.0, 0.0]))
    rolled = section_diameters(shape, 1.0, roll, GRID)
    assert rolled is not None
    assert rolled.longest_mm == pytest.approx(16.0, abs=0.02)
    assert rolled.short_mm == pytest.approx(12.0, abs=0.1)
    # A lesion between two distant planes has no section.
    assert section_diameters(_ellipsoid((5.0, 5.0, 0.3), (0.0, 0.0, 0.0), (0.0, 0.0, 0.5)), 1.0,
                             np.eye(4), GRID) is None


def test_surface_samples_bound_the_lesion() -> None:
    ball = _ellipsoid((10.0, 10.0, 10.0), (0.0, 0.0, 0.0))
    surface = sample_surface(ball, 1.0)
    assert 9.0 < surface.inner_mm <= 10.0 <= surface.outer_mm < 11.0
    other = sample_surface(_ellipsoid((10.0, 10.0, 10.0), (0.0, 0.0, 0.0), (25.0, 0.0, 0.0)), 1.0)
    assert surfaces_apart(surface, other, 3.0)  # the surfaces are 5 mm apart
    assert not surfaces_apart(surface, other, 5.5)


def _sample_patients(
    size: str, indices: tuple[int, ...]
) -> list[tuple[PatientTruth, AnalyticCourse, float]]:
    """Patients of the bundled sample data (from their plans: masks rasterised, nothing
    rendered), optionally at another size."""
    spec = CohortSpec(patients=12, timepoints=(2, 4), fmt="both", size=size, seed=31,
                      repositioning_mm=None, lesions=(1, 5), dicom_compression="jpeg2000")
    out = []
    for index in indices:
        plan = spec.plan(index)
        out.append((patient_truth(plan), analytic_course(plan), plan.scans[0].grid.spacing[0]))
    return out


def test_mask_diameters_lie_within_the_analytic_bounds() -> None:
    errors: list[float] = []
    for truth, analytic, voxel in _sample_patients("small", (2, 8)):
        for scan, geometry in zip(truth.scans, analytic.scans, strict=True):
            masked = {les.plan.lesion_id: les.measurement for les in scan.lesions}
            assert set(masked) <= set(geometry)
            for lid, les in geometry.items():
                if lid not in masked:
                    assert les.present is None, lid  # only a lesion the mask may miss
                    continue
                longest = masked[lid].longest_diameter_mm
                assert les.low_mm - 1e-6 <= longest <= les.high_mm + 1e-6, lid
                if les.isolated and les.present:
                    assert longest >= les.longest_mm - BELOW_VOXELS * voxel - 1e-6
                    assert longest <= les.longest_mm + ABOVE_VOXELS * voxel + CHORD_ERROR_MM
                    errors.append((longest - les.longest_mm) / voxel)
    assert len(errors) >= 20
    # Unbiased up to the chord's ends falling between voxel centres (-0.19 voxel here); a
    # measurement without its half-voxel allowance, or with it twice, would leave this range.
    assert -0.4 < float(np.mean(errors)) < 0.1


@pytest.mark.slow
def test_recorded_course_agrees_with_the_analytic_one() -> None:
    """On medium grids (2 mm voxels) voxelisation leaves a third of the follow-ups decided;
    these patients have decided CR, PR, SD and PD follow-ups."""
    decided: set[str] = set()
    for truth, analytic, _ in _sample_patients("medium", (1, 4, 7, 8)):
        assert truth.best_response in analytic.possible_best
        for j, verdict in enumerate(truth.assessments):
            assert verdict.response in analytic.possible[j]
            if not analytic.borderline(j):
                assert verdict.response is analytic.course.verdicts[j].response
                decided.add(verdict.response.value)
        if len(analytic.possible_best) == 1:
            assert truth.best_response is analytic.course.best
    assert decided == {"CR", "PR", "SD", "PD"}
