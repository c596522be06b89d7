"""The tracker's U-Net: the optional full-resolution level, and what the point prior feeds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medseq.tracker.config import TrackerCard, TrackerConfig
from medseq.tracker.network import build_detector, build_network
from medseq.tracker.segment import Tracker, save_tracker, track_lesions


def _first_conv(module: torch.nn.Module) -> torch.nn.Conv3d:
    return next(m for m in module.modules() if isinstance(m, torch.nn.Conv3d))


def test_full_resolution_keeps_a_stride_one_level_for_the_tracker_only() -> None:
    config = TrackerConfig(crop_size=16, widths=[4, 8, 16], full_resolution=True)
    tracker, detector = build_network(config), build_detector(config)
    assert _first_conv(tracker).stride == (1, 1, 1)
    assert _first_conv(detector).stride == (2, 2, 2)
    assert _first_conv(build_network(TrackerConfig(widths=[4, 8, 16]))).stride == (2, 2, 2)
    out = tracker(torch.zeros(2, 4, 16, 16, 16))
    assert tuple(out.shape) == (2, 1, 16, 16, 16)


def test_a_full_resolution_tracker_saves_and_loads(tmp_path: Path) -> None:
    config = TrackerConfig(crop_size=16, widths=[4, 8, 16], full_resolution=True)
    torch.manual_seed(0)
    network = build_network(config)
    card = TrackerCard(config=config, spacing_mm=[4.0, 4.0, 5.0])
    save_tracker(tmp_path, network.state_dict(), card, build_detector(config).state_dict())
    loaded = Tracker.load(tmp_path)
    x = np.random.default_rng(0).random((1, 4, 16, 16, 16)).astype(np.float32)
    with torch.no_grad():
        expected = torch.sigmoid(network(torch.from_numpy(x))).numpy()
    assert np.allclose(loaded.predict(x, flips=False), expected, atol=1e-6)


class _Recorder:
    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self.inputs: list[np.ndarray] = []

    def predict(self, inputs: np.ndarray, **_: object) -> np.ndarray:
        self.inputs.append(inputs.copy())
        return np.zeros((len(inputs), *inputs.shape[2:]), dtype=np.float32)


def test_point_prior_feeds_the_follow_up_as_its_own_prior_and_no_mask() -> None:
    rng = np.random.default_rng(1)
    follow, base = rng.random((20, 20, 20)), rng.random((20, 20, 20))
    lesion = np.zeros((20, 20, 20), dtype=bool)
    lesion[8:12, 8:12, 8:12] = True
    seen = {}
    for prior in ("baseline", "point"):
        recorder = _Recorder(TrackerConfig(crop_size=8, widths=[4, 8], track_prior=prior,
                                           prior_refine="none"))
        track_lesions(recorder, follow, base, [lesion], np.ones(3))  # type: ignore[arg-type]
        seen[prior] = recorder.inputs[0][0]
    assert np.array_equal(seen["point"][0], seen["baseline"][0])
    assert np.array_equal(seen["point"][1], seen["baseline"][1])  # the same point prompt
    assert np.array_equal(seen["point"][2], seen["point"][0])
    assert not seen["point"][3].any()
    assert seen["baseline"][3].sum() == 64
    assert not np.array_equal(seen["baseline"][2], seen["baseline"][0])
