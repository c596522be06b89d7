"""Training samples: the prior-zoom augmentation and detection samples with baseline context."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseq.contracts.cache import read_manifest
from medseq.tracker.config import TrackerConfig
from medseq.tracker.pairs import _zoom, items, load_patient, normaliser, sample
from medseq.tracker.views import apply
from tests.tracker.tiny_cache import write_tiny_cache


def test_zoom_scales_about_the_centre() -> None:
    centre = np.array([10.0, 12.0, 5.0])
    matrix = _zoom(centre, 1.5)
    assert np.allclose(apply(matrix, centre), centre)
    assert np.allclose(apply(matrix, centre + np.array([2.0, 0.0, -1.0])),
                       centre + np.array([3.0, 0.0, -1.5]))


def test_prior_zoom_changes_the_prior_not_the_target(tmp_path: Path) -> None:
    cache = write_tiny_cache(tmp_path / "c", patients=1, timepoints=2)
    manifest = read_manifest(cache)
    data = load_patient(cache, manifest.patients["P000"], normaliser(manifest.config))
    assert data is not None
    item = items([data])["track"][0]
    priors, targets = [], []
    for zoom in (0.0, 0.5):
        config = TrackerConfig(crop_size=32, prior_zoom=zoom, jitter_mm=0.0)
        sizes = [sample(item, data, config, np.random.default_rng(seed)) for seed in range(6)]
        priors.append([float(x[3].sum()) for x, _ in sizes])
        targets.append([float(y.sum()) for _, y in sizes])
    assert np.ptp(priors[0]) < 1e-3  # without zoom the prior is the baseline lesion itself
    assert np.ptp(priors[1]) > 0.2 * np.mean(priors[1])
    assert targets[0] == targets[1]  # the target never changes


def test_detection_samples_carry_the_baseline_at_follow_ups(tmp_path: Path) -> None:
    cache = write_tiny_cache(tmp_path / "c", patients=1, timepoints=2)
    manifest = read_manifest(cache)
    data = load_patient(cache, manifest.patients["P000"], normaliser(manifest.config))
    assert data is not None
    detect = next(i for i in items([data])["detect"] if i.timepoint == 1)
    on = sample(detect, data, TrackerConfig(crop_size=32), np.random.default_rng(0),
                augment=False)[0]
    off = sample(detect, data, TrackerConfig(crop_size=32, detect_context=False),
                 np.random.default_rng(0), augment=False)[0]
    assert np.array_equal(on[0], off[0])
    assert on[2].any()
    assert not off[2].any()
    assert not np.array_equal(on[2], on[0])  # the baseline, not the follow-up again
    assert not on[1].any()
    assert not on[3].any()


def test_change_weight_draws_changing_lesions_more_often(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from medseq.tracker.train import _batch

    cache = write_tiny_cache(tmp_path / "c", patients=1, timepoints=3)
    manifest = read_manifest(cache)
    data = load_patient(cache, manifest.patients["P000"], normaliser(manifest.config))
    assert data is not None
    pools = items([data])
    for item in pools["track"]:
        follow = sum(data.timepoints[item.timepoint].voxels[j - 1]
                     for j in data.links[item.timepoint][item.lesion])
        base = data.timepoints[0].voxels[item.lesion - 1]
        assert np.isclose(item.change, abs(np.log((follow + 1) / (base + 1))))
    most = max(pools["track"], key=lambda i: i.change)
    least = min(pools["track"], key=lambda i: i.change)
    assert most.change > 2 * least.change
    # a pool of two items, the most and the least changing: weighting shifts the draws
    import medseq.tracker.train as train

    drawn: list[object] = []

    def record(item: object, *args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        drawn.append(item)
        return np.zeros((4, 2, 2, 2), np.float32), np.zeros((1, 2, 2, 2), np.float32)

    monkeypatch.setattr(train, "sample", record)
    two = {"track": [most, least], "self": [], "detect": []}
    share = {}
    for weight in (0.0, 20.0):
        drawn.clear()
        config = TrackerConfig(batch_size=400, change_weight=weight)
        _batch([data], two, config, np.random.default_rng(0), kinds=("track",))
        share[weight] = sum(item is most for item in drawn) / len(drawn)
    expected = (1 + 20 * most.change) / (2 + 20 * (most.change + least.change))
    assert abs(share[0.0] - 0.5) < 0.1
    assert abs(share[20.0] - expected) < 0.1
    assert share[20.0] > share[0.0] + 0.1
