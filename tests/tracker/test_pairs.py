"""Training samples: prior zoom, detection context, links of every ordered pair of timepoints,
time-reversed tracking pairs, new-lesion detection targets and pasted new lesions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from medseq.contracts.cache import read_manifest
from medseq.tracker.config import TrackerConfig
from medseq.tracker.pairs import (
    Item,
    PatientData,
    Timepoint,
    _zoom,
    insert_lesion,
    items,
    linked,
    load_patient,
    normaliser,
    sample,
    timepoint,
)
from medseq.tracker.prompt import crop
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


def _two_scans() -> PatientData:
    """Baseline (registered grid) with lesions A and B; a follow-up on a grid shifted by
    (3, -2, 1) voxels where A remains, B is gone and C is new."""
    shape = (40, 40, 20)
    spacing = np.array([4.0, 4.0, 5.0])
    offset = np.array([3, -2, 1])
    to_view = np.eye(4)
    to_view[:3, 3] = -offset  # registered voxel v is follow-up voxel v - offset
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    body = np.ones(shape, dtype=bool)

    def scan(centres: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        mask = np.zeros(shape, dtype=bool)
        for c in centres:
            mask |= np.linalg.norm((idx - c) * spacing, axis=-1) <= 7.0
        return np.where(mask, 1.0, 0.3).astype(np.float16), mask

    a, b, c = np.array([12, 12, 10]), np.array([28, 26, 9]), np.array([14, 30, 8])
    base = timepoint(*scan([a, b]), body, spacing, np.eye(4))
    follow = timepoint(*scan([a - offset, c]), body, spacing, to_view)
    return linked("P", [base, follow])


def _component_at(tp: Timepoint, voxel: np.ndarray) -> int:
    return int(tp.components[tuple(voxel)])


def test_every_ordered_pair_is_linked_and_gone_lesions_are_new_backwards() -> None:
    data = _two_scans()
    base, follow = data.timepoints
    a0, b0 = _component_at(base, np.array([12, 12, 10])), _component_at(base, np.array([28, 26, 9]))
    a1 = _component_at(follow, np.array([9, 14, 9]))
    c1 = _component_at(follow, np.array([14, 30, 8]))
    assert min(a0, b0, a1, c1) > 0
    assert data.pair_links[0, 1] == {a0: [a1], b0: []}
    assert data.pair_new[0, 1] == [c1]
    assert data.links[1] == data.pair_links[0, 1]
    assert data.new[1] == [c1]
    assert data.pair_links[1, 0] == {a1: [a0], c1: []}
    assert data.pair_new[1, 0] == [b0]  # B vanished: seen backwards, it is new
    assert data.pair_new[0, 0] == []
    assert data.pair_new[1, 1] == []


def test_all_pairs_add_time_reversed_tracking_samples() -> None:
    data = _two_scans()
    forward = items([data])["track"]
    both = items([data], "all")["track"]
    assert {(i.source, i.timepoint) for i in forward} == {(0, 1)}
    assert {(i.source, i.timepoint) for i in both} == {(0, 1), (1, 0)}
    a1 = _component_at(data.timepoints[1], np.array([9, 14, 9]))
    backwards = next(i for i in both if i.source == 1 and i.lesion == a1)
    config = TrackerConfig(crop_size=16, jitter_mm=0.0)
    x, y = sample(backwards, data, config, np.random.default_rng(0), augment=False)
    base = data.timepoints[0]
    a0 = _component_at(base, np.array([12, 12, 10]))
    assert x[3].sum() > 10  # the follow-up's lesion, carried onto the baseline grid
    # the same draw as sample(): the crop centre near A's centroid carried to the baseline
    point = apply(np.linalg.inv(data.timepoints[1].to_view),
                  data.timepoints[1].centroids[a1 - 1])
    centre = np.rint(point + np.random.default_rng(0).normal(0, 1.0, 3)).astype(int)
    expected = crop(base.components, centre, 16) == a0
    assert expected.sum() > 10
    assert np.array_equal(y[0].astype(bool), expected)


def test_new_lesion_detection_targets_only_what_the_context_lacks() -> None:
    data = _two_scans()
    config = TrackerConfig(crop_size=16, detector="separate", detect_target="new")
    base, follow = data.timepoints
    b0 = _component_at(base, np.array([28, 26, 9]))
    c1 = _component_at(follow, np.array([14, 30, 8]))
    for t, tp, new in ((0, base, b0), (1, follow, c1)):
        item = Item("detect", 0, t, 0)
        positives = 0
        for seed in range(40):
            x, y = sample(item, data, config, np.random.default_rng(seed), augment=False)
            if y.any():
                assert not np.array_equal(x[2], x[0])  # the other scan is the context
                positives += 1
                # every target voxel is lesion here and background in the other scan
                target = y[0].astype(bool)
                assert y.sum() <= (tp.components == new).sum()
                assert np.all(x[0][target] > 0.9)
                assert np.all(x[2][target] < 0.5)
            # a lesion in both scans is never a target
            assert not (y[0].astype(bool) & (x[0] > 0.9) & (x[2] > 0.9)).any()
        assert positives >= 10
    everything = TrackerConfig(crop_size=16)
    hits = [sample(Item("detect", 0, 0, 0), data, everything, np.random.default_rng(s),
                   augment=False)[1].any() for s in range(40)]
    assert any(hits)  # at baseline the "all" target holds the baseline's own lesions


def test_refined_prior_is_the_baseline_lesion_scaled_to_the_follow_up() -> None:
    shape = (40, 40, 20)
    spacing = np.array([4.0, 4.0, 5.0])
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    body = np.ones(shape, dtype=bool)
    rng = np.random.default_rng(0)

    def scan(radius_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """A dark soft-tissue lesion (-45 HU against its organ) at (20, 20, 10)."""
        mask = np.linalg.norm((idx - [20, 20, 10]) * spacing, axis=-1) <= radius_mm
        image = np.where(mask, 0.43, 0.52) + rng.normal(0, 0.006, shape)
        return image.astype(np.float16), mask

    data = linked("P", [timepoint(*scan(16.0), body, spacing, np.eye(4)),
                        timepoint(*scan(9.6), body, spacing, np.eye(4))])
    (item,) = items([data])["track"]
    priors = {}
    for refine in ("none", "scale"):
        config = TrackerConfig(crop_size=24, jitter_mm=0.0, prior_refine=refine)
        x, y = sample(item, data, config, np.random.default_rng(1), augment=False)
        priors[refine] = float(x[3].sum())
        assert float(y.sum()) == data.timepoints[1].voxels[0]  # the target is the truth
    assert priors["none"] == pytest.approx(data.timepoints[0].voxels[0], rel=0.05)
    assert priors["scale"] == pytest.approx(priors["none"] * 0.6**3, rel=0.25)
    assert data.fits[0, 1, 1].scale == pytest.approx(0.6, rel=0.08)


def test_a_pasted_lesion_is_the_patients_own_added_to_like_tissue_away_from_lesions() -> None:
    data = _two_scans()  # lesions 1.0 in tissue 0.3
    follow = data.timepoints[1]
    sizes = {int(v) for tp in data.timepoints for v in tp.voxels}
    pasted = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        centre = np.array([20, 20, 10])
        window = crop(follow.image, centre, 16).astype(np.float32)
        before = window.copy()
        labels = crop(follow.components, centre, 16)
        mask = insert_lesion(window, labels, data, rng)
        if mask is None:
            continue
        pasted += 1
        assert 2 <= mask.sum() <= max(sizes)
        assert not (mask & (labels > 0)).any()
        assert np.allclose(before[mask], 0.3, atol=1e-3)  # pasted into the tissue it came from
        added = window - before
        assert 0.3 < added[mask].mean() < 0.75  # the contrast, 0.7, less smoothing and zoom
        assert np.abs(added[~ndimage.binary_dilation(mask, iterations=3)]).max() < 0.01  # local
    assert pasted >= 15


def test_detection_windows_with_pasting_target_the_pasted_lesion() -> None:
    data = _two_scans()
    config = TrackerConfig(crop_size=16, detector="separate", detect_target="new",
                           detect_insert=1.0)
    targets = 0
    for seed in range(20):
        x, y = sample(Item("detect", 0, 1, 0), data, config, np.random.default_rng(seed),
                      augment=False)
        target = y[0].astype(bool)
        if target.any():
            targets += 1
            assert np.all(x[2][target & (x[0] > 0.6)] < 0.5)  # absent from the context
    assert targets >= 18
    no_paste = TrackerConfig(crop_size=16, detector="separate", detect_target="new")
    plain = [sample(Item("detect", 0, 1, 0), data, no_paste, np.random.default_rng(s),
                    augment=False)[1].any() for s in range(20)]
    assert sum(plain) < targets
