"""Lesion measurements from crops: geometry, HU, changes, and the same numbers in training and
inference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseq.contracts.run import CLASSICAL_FEATURES, LESION_MEASUREMENTS, ModelInputs
from medseq.models.inputs import prepare_inputs
from medseq.models.measurements import (
    CropGeometry,
    classical_features,
    geometry_from_preprocess,
    lesion_features,
    measure_crops,
    timepoint_features,
)

S = 24
SPACING = 2.0
GEOMETRY = CropGeometry(spacing_mm=SPACING, hu_offset=-200.0, hu_scale=500.0)


def _ball_crops(radii: list[float], lesion_hu: list[float], rim_hu: list[float]) -> np.ndarray:
    """[T, 1, 2, S, S, S]: a ball per scan, with a one-voxel rim of other HU."""
    centre = (S - 1) / 2
    grid = np.indices((S, S, S)).astype(float) * SPACING
    r = np.sqrt(((grid - centre * SPACING) ** 2).sum(axis=0))
    crops = np.zeros((len(radii), 1, 2, S, S, S), np.float32)
    for t, (radius, hu, rim) in enumerate(zip(radii, lesion_hu, rim_hu, strict=True)):
        inside = r <= radius
        image = np.full((S, S, S), 40.0)  # liver-like background
        image[inside] = rim
        image[r <= radius - SPACING * 1.01] = hu
        crops[t, 0, 0] = (image + 200.0) / 500.0
        crops[t, 0, 1] = inside
    return crops


def test_volume_and_diameters_of_a_ball() -> None:
    m = measure_crops(_ball_crops([10.0], [60.0], [90.0]), GEOMETRY)
    assert m.volume_ml[0, 0] == pytest.approx(4 / 3 * math.pi * 10**3 / 1000, rel=0.1)
    # voxel-centre extent plus one voxel: within a voxel of the true 20 mm
    assert 19.0 <= m.longest_mm[0, 0] <= 22.1
    assert m.short_mm[0, 0] == pytest.approx(m.longest_mm[0, 0], abs=2.1)


def test_rim_and_core_hu_are_told_apart() -> None:
    m = measure_crops(_ball_crops([10.0], [20.0], [100.0]), GEOMETRY)
    assert m.rim_hu[0, 0] == pytest.approx(100.0, abs=1.0)
    assert m.core_hu[0, 0] == pytest.approx(20.0, abs=1.0)
    assert m.rim_hu[0, 0] > m.mean_hu[0, 0] > m.core_hu[0, 0]


def test_absent_lesion_measures_zero_and_has_no_intensity() -> None:
    crops = _ball_crops([8.0, 8.0], [50.0, 50.0], [80.0, 80.0])
    crops[1, 0, 1] = 0.0
    m = measure_crops(crops, GEOMETRY)
    assert m.volume_ml[1, 0] == 0.0
    assert m.longest_mm[1, 0] == 0.0
    assert math.isnan(m.mean_hu[1, 0])
    features = lesion_features(m, [0.0, 60.0])
    assert np.isfinite(features).all()
    assert features[1, 0, LESION_MEASUREMENTS.index("present")] == 0.0


def test_changes_to_baseline_are_scaled_as_documented() -> None:
    crops = _ball_crops([10.0, 8.0], [60.0, 50.0], [90.0, 70.0])
    m = measure_crops(crops, GEOMETRY)
    features = lesion_features(m, [0.0, 50.0])
    column = {name: i for i, name in enumerate(LESION_MEASUREMENTS)}
    ratio = math.log(m.volume_ml[1, 0] + 1e-3) - math.log(m.volume_ml[0, 0] + 1e-3)
    assert features[1, 0, column["log_volume_ratio_baseline"]] == pytest.approx(ratio, abs=1e-5)
    assert features[1, 0, column["growth_per_100d"]] == pytest.approx(ratio * 2, abs=1e-4)
    assert features[1, 0, column["rim_hu_change"]] == pytest.approx(
        (m.rim_hu[1, 0] - m.rim_hu[0, 0]) / 10, abs=1e-4)
    assert features[0, 0, column["log_volume_ratio_baseline"]] == 0.0
    classical = classical_features(m, [0.0, 50.0], observed=2)
    assert list(classical) == list(CLASSICAL_FEATURES)
    assert classical["log_burden_ratio"] == pytest.approx(ratio, abs=1e-6)
    assert classical["rim_hu_change"] == pytest.approx(m.rim_hu[1, 0] - m.rim_hu[0, 0])
    assert classical_features(m, [0.0, 50.0], observed=1)["log_burden_ratio"] == 0.0


def test_scan_features_use_the_whole_mask_burden_and_new_lesion_flags() -> None:
    m = measure_crops(_ball_crops([10.0, 10.0], [60.0, 60.0], [90.0, 90.0]), GEOMETRY)
    scan = timepoint_features(m, [5.0, 10.0], [False, True])
    assert scan[0, 0] == pytest.approx(math.log1p(5.0))
    assert scan[1, 1] == pytest.approx(math.log(10.001 / 5.001), abs=1e-5)
    assert scan[:, 3].tolist() == [0.0, 1.0]
    fallback = timepoint_features(m, [None, None])
    assert fallback[0, 0] == pytest.approx(math.log1p(m.volume_ml[0].sum()), abs=1e-5)


def test_ct_window_is_inverted_to_hu() -> None:
    geometry = geometry_from_preprocess({"crop_spacing": 1.5, "ct_window": [-100, 400],
                                         "ct_range": [-1.0, 1.0]})
    assert geometry.spacing_mm == 1.5
    for hu in (-100.0, 150.0, 400.0):
        value = -1.0 + (hu + 100.0) * 2.0 / 500.0
        assert geometry.hu_offset + geometry.hu_scale * value == pytest.approx(hu)
    assert geometry_from_preprocess({"crop_spacing": 2.0}, "MR").hu_scale == 1.0


def test_prepare_inputs_measures_only_the_observed_scans() -> None:
    crops = _ball_crops([10.0, 8.0, 4.0], [60.0, 50.0, 40.0], [90.0, 70.0, 60.0])
    inputs = ModelInputs(observe=2, lesion_measurements=list(LESION_MEASUREMENTS),
                         scan_measurements=["log_burden", "log_burden_ratio_baseline",
                                            "visible_lesions", "new_lesions"],
                         crop_spacing_mm=SPACING, hu_offset=-200.0, hu_scale=500.0)
    prepared = prepare_inputs(inputs, crops.astype(np.float16), [0, 50, 100],
                              burden_ml=[4.0, 2.0, 0.5])
    assert prepared.lesion_features.shape == (2, 1, len(LESION_MEASUREMENTS))
    assert prepared.scan_features.shape == (2, 4)
    assert prepared.classical is not None
    two_scans = prepare_inputs(inputs, crops[:2].astype(np.float16), [0, 50],
                               burden_ml=[4.0, 2.0])
    torch.testing.assert_close(prepared.lesion_features, two_scans.lesion_features)
    assert prepared.classical == two_scans.classical


def test_a_card_cannot_read_measurements_it_is_not_fed() -> None:
    with pytest.raises(ValueError, match="measurements"):
        ModelInputs(lesion_measurements=["volume"])
