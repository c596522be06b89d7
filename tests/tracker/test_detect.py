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


def test_a_threshold_that_keeps_no_true_new_lesion_switches_the_detector_off() -> None:
    # Within the false-positive limit, but the one true new lesion scores below it: the
    # detector would add false PDs and find nothing.
    assert choose_threshold([(0.99, False), (0.9, False), (0.5, True)], 5, 0.2) is None
    assert choose_threshold([(0.99, False), (0.9, True), (0.5, False), (0.4, False)], 5,
                            0.2) == 0.9


def test_saturated_false_positives_switch_the_detector_off() -> None:
    # Three false positives at probability 1.0 on one scan: no threshold meets 0.3 FP/scan,
    # and 1.0 must not be returned (it would keep exactly those saturated proposals).
    assert choose_threshold([(1.0, False)] * 3 + [(0.7, True)], 1, 0.3) is None


class _Stub:
    def __init__(self, threshold: float | None, detector: str = "subtraction") -> None:
        self.config = TrackerConfig(crop_size=8, widths=[8, 16], prior_refine="none",
                                    detector=detector)  # type: ignore[arg-type]
        self.card = TrackerCard(config=self.config, detect_threshold=threshold)

    def predict(self, inputs: np.ndarray, **_: object) -> np.ndarray:
        return inputs[:, 3].copy()  # the baseline mask: found where it was

    predict_detection = predict


@pytest.mark.parametrize("detector", ["subtraction", "separate"])
@pytest.mark.parametrize("threshold", [None, 0.9])
def test_follow_up_labels_runs_the_detector_only_when_on(
        threshold: float | None, detector: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, float]] = []

    def fake(name: str) -> object:
        def run(*args: object, min_score: float, **kwargs: object) -> list[object]:
            calls.append((name, min_score))
            return []
        return run

    monkeypatch.setattr(detect, "detect_new", fake("separate"))
    monkeypatch.setattr(detect, "detect_by_subtraction", fake("subtraction"))
    image = np.full((16, 16, 16), 0.5, dtype=np.float32)  # soft tissue, not empty lung
    lesion = np.zeros(image.shape, dtype=bool)
    lesion[6:9, 6:9, 6:9] = True
    labels, sources = follow_up_labels(_Stub(threshold, detector), "P1", 1, image, image > -1,
                                       image, [lesion], np.ones(3), np.eye(4))
    assert calls == ([] if threshold is None else [(detector, threshold)])
    assert int((labels == 1).sum()) == 27
    assert [s.status for s in sources] == ["found"]


class _Recorder:
    """Records the inputs of every window; predicts nothing."""

    def __init__(self, context: bool) -> None:
        self.config = TrackerConfig(crop_size=8, widths=[8, 16], detect_context=context)
        self.card = TrackerCard(config=self.config)
        self.inputs: list[np.ndarray] = []

    def predict(self, inputs: np.ndarray, **_: object) -> np.ndarray:
        self.inputs.append(inputs.copy())
        return np.zeros(inputs[:, 0].shape, dtype=np.float32)

    predict_detection = predict


@pytest.mark.parametrize("context", [True, False])
def test_detection_windows_carry_the_baseline_image_when_trained_so(context: bool) -> None:
    rng = np.random.default_rng(0)
    follow = rng.random((16, 16, 12)).astype(np.float32)
    baseline = rng.random((20, 20, 14)).astype(np.float32)
    move = np.eye(4)
    move[:3, 3] = [-2, -1, 0]  # registered voxel r is the follow-up's voxel r - (2, 1, 0)
    recorder = _Recorder(context)
    detect.sliding_window(recorder, follow, follow > -1, baseline, move)  # type: ignore[arg-type]
    inputs = np.concatenate(recorder.inputs)
    if context:
        # the window at follow-up voxels [0, 8) holds the baseline's voxels [2, 10) etc.
        first = inputs[0]
        assert np.allclose(first[2], baseline[2:10, 1:9, 0:8])
        assert np.allclose(first[0], follow[0:8, 0:8, 0:8])
    else:
        assert not inputs[:, 2].any()
    assert not inputs[:, 1].any()
    assert not inputs[:, 3].any()


def test_format_1_cards_detect_without_context() -> None:
    config = TrackerConfig().model_dump()
    del config["detect_context"]
    old = TrackerCard.model_validate({"format": 1, "config": config})
    assert old.config.detect_context is False
    assert TrackerCard(config=TrackerConfig()).config.detect_context is True
    assert TrackerCard.model_validate_json(TrackerCard(config=TrackerConfig()).model_dump_json()
                                           ).config.detect_context is True


def test_format_2_cards_read_unscaled_priors() -> None:
    config = TrackerConfig().model_dump()
    del config["prior_refine"]
    assert TrackerCard.model_validate({"format": 2, "config": config}).config.prior_refine == (
        "none")
    assert TrackerCard.model_validate({"format": 3, "config": config}).config.prior_refine == (
        "scale")
    card = TrackerCard(config=TrackerConfig())
    assert card.format == 3
    assert TrackerCard.model_validate_json(card.model_dump_json()).config.prior_refine == "scale"


def test_cards_without_the_scale_prior_fit_by_least_squares() -> None:
    """The prior is on by default for new trackers; one whose card predates the setting was
    trained with plain least squares and keeps it."""
    assert TrackerConfig().scale_prior_sd == 0.6
    config = TrackerConfig().model_dump()
    del config["scale_prior_sd"]
    assert TrackerCard.model_validate({"format": 3, "config": config}).config.scale_prior_sd == 0
    written = TrackerCard(config=TrackerConfig(scale_prior_sd=0.4)).model_dump_json()
    assert TrackerCard.model_validate_json(written).config.scale_prior_sd == 0.4


def test_flip_average_undoes_each_flip() -> None:
    """A network that returns the baseline-mask channel is flip-equivariant: averaging over
    the flips gives its plain output; one that adds a fixed ramp becomes symmetric."""
    import torch

    from medseq.tracker.segment import Tracker

    class Copy(torch.nn.Module):
        def __init__(self, ramp: bool) -> None:
            super().__init__()
            self.ramp = ramp

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = x[:, 3:4] * 4 - 2
            if self.ramp:
                out = out + torch.linspace(-3, 3, x.shape[2]).view(1, 1, -1, 1, 1)
            return out

    rng = np.random.default_rng(1)
    inputs = (rng.random((2, 4, 8, 8, 8)) > 0.5).astype(np.float32)
    config = TrackerConfig(crop_size=8, widths=[8, 16])
    card = TrackerCard(config=config)
    plain = Tracker(card, Copy(False), torch.device("cpu"))
    assert np.allclose(plain.predict(inputs, flips=True), plain.predict(inputs), atol=1e-6)
    ramp = Tracker(card, Copy(True), torch.device("cpu"))
    flat = np.zeros_like(inputs)
    averaged = ramp.predict(flat, flips=True)
    assert np.allclose(averaged, averaged[:, ::-1], atol=1e-6)
    assert not np.allclose(ramp.predict(flat), ramp.predict(flat)[:, ::-1])


def test_a_lesion_drawn_on_empty_lung_is_vanished() -> None:
    from medseq.tracker.segment import FOUND, VANISHED, LesionOutcome, empty_in_image

    image = np.zeros((12, 12, 12), dtype=np.float32)  # the window floor: air, aerated lung
    mask = np.zeros(image.shape, dtype=bool)
    mask[4:7, 4:7, 4:7] = True
    found = LesionOutcome(FOUND, mask, 0.8, 0.95)
    level = 0.02  # -190 HU in the default window's units
    gone = empty_in_image(found, image, level)
    assert (gone.status, gone.mask, gone.confidence) == (VANISHED, None, 1.0)
    image[5, 5, 6] = 0.03  # one voxel of partial-volume tissue: still there
    assert empty_in_image(found, image, level) is found
    image[5, 5, 6] = 0.0
    image[0, 0, 0] = 0.5  # tissue outside the mask does not count
    assert empty_in_image(found, image, level).status == VANISHED
    not_found = LesionOutcome("not_found", None, 0.3, 0.7)
    assert empty_in_image(not_found, image, level) is not_found
