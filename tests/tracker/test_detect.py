"""Choosing the new-lesion score threshold, and a tracker whose detector is off."""

from __future__ import annotations

import numpy as np
import pytest

import medseq.tracker.detect as detect
from medseq.tracker.config import TrackerCard, TrackerConfig
from medseq.tracker.detect import choose_threshold
from medseq.tracker.fill import follow_up_labels


def test_threshold_is_lowest_score_within_the_false_positive_limit() -> None:
    scored = [(0.95, True), (0.9, False), (0.8, True), (0.7, False), (0.6, False)]
    # 2 scans x 0.5 FP/scan: one false positive allowed -> 0.8 (0.7 would make two).
    assert choose_threshold(scored, 2, 0.5) == 0.8
    assert choose_threshold(scored, 10, 0.5) == 0.6


def test_no_candidates_means_detector_off_not_threshold_one() -> None:
    assert choose_threshold([], 36, 0.3) is None


def test_saturated_false_positives_switch_the_detector_off() -> None:
    # Three false positives at probability 1.0 on one scan: no threshold meets 0.3 FP/scan,
    # and 1.0 must not be returned (it would keep exactly those saturated proposals).
    assert choose_threshold([(1.0, False)] * 3 + [(0.7, True)], 1, 0.3) is None


class _Stub:
    def __init__(self, threshold: float | None) -> None:
        self.config = TrackerConfig(crop_size=8, widths=[8, 16])
        self.card = TrackerCard(config=self.config, detect_threshold=threshold)

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return inputs[:, 3].copy()  # the baseline mask: found where it was


@pytest.mark.parametrize("threshold", [None, 0.9])
def test_follow_up_labels_runs_the_detector_only_when_on(
        threshold: float | None, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def fake_detect(*args: object, min_score: float, **kwargs: object) -> list[object]:
        calls.append(min_score)
        return []

    monkeypatch.setattr(detect, "detect_new", fake_detect)
    image = np.zeros((16, 16, 16), dtype=np.float32)
    lesion = np.zeros(image.shape, dtype=bool)
    lesion[6:9, 6:9, 6:9] = True
    labels, sources = follow_up_labels(_Stub(threshold), "P1", 1, image, image > -1, image,
                                       [lesion], np.ones(3), np.eye(4))
    assert calls == ([] if threshold is None else [threshold])
    assert int((labels == 1).sum()) == 27
    assert [s.status for s in sources] == ["found"]
