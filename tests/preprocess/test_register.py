"""Rigid registration on phantoms with known repositioning, and the failure check."""

from __future__ import annotations

import numpy as np
import pytest

from medseq.io.volume import Volume
from medseq.preprocess.config import RegistrationConfig
from medseq.preprocess.register import prepare_fixed, register_rigid
from tests.preprocess.phantom import grid_affine, render, rigid

SHAPE = (48, 40, 40)
CONFIG = RegistrationConfig()
PROBES = np.array([[20.0, 10.0, 5.0], [-25.0, -5.0, -15.0], [0.0, -40.0, 30.0], [40, 0, -40]])


def scan(motion: np.ndarray | None, *, lps: bool = False, spacing=(4.0, 4.0, 5.0)) -> Volume:
    affine = grid_affine(SHAPE, spacing, lps=lps)
    image, _ = render(SHAPE, affine, motion=motion)
    return Volume(image, affine)


@pytest.mark.parametrize(("angles", "shift", "lps"), [
    ((3, -2, 5), (6, -4, 3), False),
    ((-4, 3, -6), (-12, 8, 15), True),
    ((0, 0, 0), (0, 0, 0), False),
])
def test_registration_recovers_known_motion(angles: tuple, shift: tuple, lps: bool) -> None:
    motion = rigid(angles, shift)
    fixed = prepare_fixed(scan(None), modality="CT", config=CONFIG)
    result = register_rigid(fixed, scan(motion, lps=lps), modality="CT", config=CONFIG)
    assert result.record.ok, result.record.message
    # A baseline point p sits at motion @ p in the follow-up; M maps it back to p.
    homogeneous = np.c_[PROBES, np.ones(len(PROBES))]
    back = (result.transform_to_baseline @ motion @ homogeneous.T).T[:, :3]
    errors = np.linalg.norm(back - PROBES, axis=1)
    assert errors[:2].max() < 1.0, errors  # the lesion centres
    assert errors.max() < 1.5, errors  # anywhere in the body
    assert result.record.final_metric <= result.record.initial_metric * 0.99
    assert result.record.body_dice > 0.95
    assert np.allclose(result.baseline_to_followup @ result.transform_to_baseline, np.eye(4))


def test_registration_is_deterministic() -> None:
    motion = rigid((2, 2, -3), (5, 5, -5))
    fixed = prepare_fixed(scan(None), modality="CT", config=CONFIG)
    first = register_rigid(fixed, scan(motion), modality="CT", config=CONFIG)
    second = register_rigid(fixed, scan(motion), modality="CT", config=CONFIG)
    assert np.array_equal(first.transform_to_baseline, second.transform_to_baseline)


def test_unrelated_scan_is_flagged_as_failed() -> None:
    fixed = prepare_fixed(scan(None), modality="CT", config=CONFIG)
    affine = grid_affine(SHAPE, (4.0, 4.0, 5.0))
    other = np.full(SHAPE, -1000, np.int16)
    other[5:12, 30:38, 2:40] = 40  # a thin rod: no body to overlap
    result = register_rigid(fixed, Volume(other, affine), modality="CT", config=CONFIG)
    assert not result.record.ok
    assert "registration failed" in result.record.message
    assert result.record.body_dice < CONFIG.min_body_dice
