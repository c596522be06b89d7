"""The subtraction detector on CT-like volumes: what it proposes, what its rules refuse, and
how its threshold is chosen."""

from __future__ import annotations

import numpy as np
import pytest

from medseq.tracker.detect import choose_subtraction_threshold, detect_by_subtraction
from medseq.tracker.subtraction import Levels, resample_to_view, subtraction_candidates

CONFIG = {"ct_window": [-200.0, 300.0], "ct_range": [0.0, 1.0]}
SPACING = np.array([4.0, 4.0, 5.0])
SHAPE = (48, 48, 24)


def hu(value: float) -> float:
    return (value + 200.0) / 500.0


def ball(centre: tuple[float, float, float], radius: float) -> np.ndarray:
    grid = np.indices(SHAPE).astype(np.float64)
    mm = [(grid[a] - centre[a]) * SPACING[a] for a in range(3)]
    return np.sqrt(sum(m * m for m in mm)) <= radius


def scan(seed: int) -> np.ndarray:
    """Body with a lung (air, clipped to 0) on one side and liver (60 HU) on the other,
    4 HU noise in the tissue."""
    rng = np.random.default_rng(seed)
    image = np.zeros(SHAPE, dtype=np.float32)
    image[4:44, 4:44, 1:23] = hu(60.0)
    image[6:23, 6:42, 2:22] = 0.0  # lung
    tissue = image > 0
    image[tissue] += rng.normal(0.0, 4.0 / 500.0, int(tissue.sum())).astype(np.float32)
    return image


@pytest.fixture(scope="module")
def pair() -> dict[str, np.ndarray]:
    baseline, follow = scan(1), scan(2)
    nodule = ball((14, 20, 12), 6.0)  # a new lung nodule
    follow[nodule] = hu(40.0)
    vessel = ball((14, 34, 8), 6.0)  # a vessel the baseline's slices caught in partial volume
    baseline[vessel] = hu(-160.0)
    follow[vessel] = hu(40.0)
    gas = ball((32, 14, 12), 8.0)  # bowel gas where there was liver
    follow[gas] = 0.0
    liver_lesion = ball((32, 32, 12), 9.0)  # a new hypodense liver lesion, -25 HU
    follow[liver_lesion] -= 25.0 / 500.0
    body = np.zeros(SHAPE, dtype=bool)
    body[4:44, 4:44, 1:23] = True
    return {"baseline": baseline, "follow": follow, "nodule": nodule, "gas": gas,
            "vessel": vessel, "liver": liver_lesion, "body": body}


def proposals(pair: dict[str, np.ndarray], explained: np.ndarray | None = None
              ) -> list[tuple[np.ndarray, float]]:
    blobs = subtraction_candidates(pair["follow"], pair["baseline"], pair["body"], SPACING,
                                   np.zeros(SHAPE, dtype=bool) if explained is None
                                   else explained, Levels.for_cache(CONFIG))
    for blob in blobs:  # the box and the full mask agree
        full = blob.full(SHAPE)
        assert full.sum() == blob.voxels
        assert np.allclose(np.argwhere(full).mean(axis=0), blob.centroid())
    return [(blob.full(SHAPE), blob.score) for blob in blobs]


def hit(found: list[tuple[np.ndarray, float]], truth: np.ndarray) -> list[float]:
    return [score for mask, score in found if (mask & truth).any()]


def test_a_new_lung_nodule_scores_high_and_a_new_liver_lesion_is_proposed(pair: dict) -> None:
    found = proposals(pair)
    nodule, liver = hit(found, pair["nodule"]), hit(found, pair["liver"])
    assert len(nodule) == 1
    assert nodule[0] > 15.0
    assert len(liver) >= 1
    assert max(liver) > 3.0
    # nothing else but those two (and nothing at the gas or the moved vessel)
    assert all((mask & (pair["nodule"] | pair["liver"])).any() for mask, _ in found)


def test_gas_and_a_vessel_the_baseline_half_showed_are_refused(pair: dict) -> None:
    found = proposals(pair)
    assert hit(found, pair["gas"]) == []
    assert hit(found, pair["vessel"]) == []


def test_what_a_known_lesion_explains_is_not_proposed(pair: dict) -> None:
    found = proposals(pair, explained=pair["nodule"])
    assert hit(found, pair["nodule"]) == []
    assert hit(found, pair["liver"])


def test_detect_by_subtraction_skips_tracked_lesions_and_low_scores(pair: dict) -> None:
    common = {"baseline_image": pair["baseline"], "to_view": None, "preprocess_config": CONFIG}
    everything = detect_by_subtraction(pair["follow"], pair["body"], SPACING, tracked=[],
                                       baseline=[], **common)
    assert len(everything) == 2
    far = ball((32, 40, 4), 5.0)  # a baseline lesion far from both
    assert len(detect_by_subtraction(pair["follow"], pair["body"], SPACING, tracked=[],
                                     baseline=[far], **common)) == 2
    # the tracker followed a lesion to where the nodule is: it explains it
    kept = detect_by_subtraction(pair["follow"], pair["body"], SPACING,
                                 tracked=[pair["nodule"]], baseline=[], **common)
    assert len(kept) == 1
    assert (kept[0].mask & pair["liver"]).any()
    strict = detect_by_subtraction(pair["follow"], pair["body"], SPACING, tracked=[],
                                   baseline=[], min_score=15.0, **common)
    assert len(strict) == 1
    assert (strict[0].mask & pair["nodule"]).any()
    assert strict[0].score >= 15.0


def test_a_registered_baseline_reaches_the_follow_up_grid(pair: dict) -> None:
    move = np.eye(4)
    move[:3, 3] = [-2, 1, 0]  # registered voxel r is the follow-up's voxel r + (-2, 1, 0)
    on_view = resample_to_view(pair["baseline"], move, SHAPE)
    assert np.allclose(on_view[5:40, 5:40, :], pair["baseline"][7:42, 4:39, :])
    assert np.array_equal(resample_to_view(pair["baseline"], None, SHAPE), pair["baseline"])
    # any rigid matrix, slab by slab, equals sampling every voxel at once
    from scipy import ndimage
    from scipy.spatial.transform import Rotation

    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_euler("xyz", [4, -3, 7], degrees=True).as_matrix()
    turn[:3, 3] = [1.5, -2.25, 0.5]
    points = np.indices((20, 18, 10)).reshape(3, -1).astype(np.float64)
    back = np.linalg.inv(turn)
    direct = ndimage.map_coordinates(pair["baseline"], back[:3, :3] @ points + back[:3, 3:],
                                     order=1, mode="nearest").reshape(20, 18, 10)
    assert np.allclose(resample_to_view(pair["baseline"], turn, (20, 18, 10), slab=3), direct,
                       atol=1e-6)


def test_threshold_keeps_at_most_the_allowed_false_positives() -> None:
    scores = [(20.0, True), (15.0, False), (12.0, False), (11.0, True), (9.0, False)]
    # 100 scans x 0.02: two false positives allowed -> every score above the third (9.0)
    threshold = choose_subtraction_threshold(scores, 100, 0.02)
    assert threshold is not None
    assert 9.0 < threshold <= 9.0 + 1e-9
    # 50 scans: one allowed -> just above 12.0; the true 11.0 is lost
    threshold = choose_subtraction_threshold(scores, 50, 0.02)
    assert threshold is not None
    assert 12.0 < threshold < 12.0001
    assert sum(s >= threshold for s, _ in scores) == 2
    # no false positive allowed -> above the best false one; no true one is needed
    assert choose_subtraction_threshold([(5.0, False)], 10, 0.0) == pytest.approx(5.0)
    assert choose_subtraction_threshold([(5.0, False)], 10, 0.0) > 5.0
    # fewer false positives than allowed: the lowest score; none at all: off
    assert choose_subtraction_threshold([(7.0, False), (4.0, True)], 100, 0.05) == 4.0
    assert choose_subtraction_threshold([], 100, 0.05) is None


def test_nothing_is_proposed_where_the_baseline_was_not_scanned(pair: dict) -> None:
    from medseq.tracker.subtraction import covered

    short = pair["baseline"][:, :, :18]  # the baseline stops 6 slices before the follow-up
    follow = pair["follow"].copy()
    beyond = ball((14, 30, 21), 6.0)
    follow[beyond] = hu(40.0)  # a "nodule" where the baseline has no slice to compare with
    found = detect_by_subtraction(follow, pair["body"], SPACING, tracked=[], baseline=[],
                                  baseline_image=short, to_view=np.eye(4),
                                  preprocess_config=CONFIG)
    assert any((c.mask & pair["nodule"]).any() for c in found)
    assert not any((c.mask & beyond).any() for c in found)
    assert all(c.centroid[2] <= 15 for c in found)
    # the surround's width inside the baseline's last slice (2.5 voxels in-plane = 2 slices)
    inside = covered(np.eye(4), (48, 48, 18), SHAPE, SPACING)
    assert inside[10:38, 10:38, 15].all()
    assert not inside[:, :, 16:].any()
    assert not inside[:2, :, :].any()
    assert inside[3, 10, 10]
