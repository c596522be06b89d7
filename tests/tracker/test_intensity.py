"""The tracker's intensity scale and its record in tracker.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medseq.tracker.config import TrackerCard, TrackerConfig
from medseq.tracker.intensity import standardise_inputs, units_per_hu
from medseq.tracker.segment import read_card

LOCAL = TrackerConfig(intensity="local")
PP = {"ct_window": [-200.0, 300.0], "ct_range": [0.0, 1.0]}


def _hu(values: np.ndarray) -> np.ndarray:
    """HU -> the cache's units (clipped window, as preprocess does)."""
    return (np.clip(values, -200, 300) + 200) / 500


def _inputs(offset_hu: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    hu = np.full((8, 8, 8), 60.0) + rng.normal(0, 4, (8, 8, 8)) + offset_hu
    hu[2:5, 2:5, 2:5] -= 25  # a hypodense liver lesion
    hu[7] = -1000  # air: clipped by the window, not part of the reference
    x = np.zeros((1, 4, 8, 8, 8), dtype=np.float32)
    x[0, 0] = _hu(hu)
    x[0, 1] = 0.5
    return x


def test_local_scale_puts_a_25_hu_lesion_one_unit_below_its_organ() -> None:
    out = standardise_inputs(_inputs(), LOCAL, PP)[0]
    lesion = out[0, 2:5, 2:5, 2:5].mean()
    organ = np.median(out[0, :7])
    assert abs(organ) < 0.1
    assert abs(lesion - organ + 1.0) < 0.15
    assert out[0, 7].max() == -LOCAL.intensity_clip  # air clipped
    assert not out[2].any()  # an absent baseline channel stays zeros
    assert np.array_equal(out[1], _inputs()[0, 1])  # the prompt is not touched


def test_local_scale_ignores_a_global_shift_and_cache_scale_is_unchanged() -> None:
    config = LOCAL
    a = standardise_inputs(_inputs(), config, PP)
    b = standardise_inputs(_inputs(offset_hu=30.0), config, PP)
    assert np.abs(a[0, 0, :7] - b[0, 0, :7]).max() < 1e-4
    x = _inputs()
    assert standardise_inputs(x, TrackerConfig(intensity="cache"), PP) is x
    assert units_per_hu({"ct_window": [-100, 100], "ct_range": [0, 2]}) == 0.01


def test_tracker_json_records_the_scale_and_older_cards_read_as_cache(tmp_path: Path) -> None:
    card = json.loads(TrackerCard(config=TrackerConfig(intensity="local")).model_dump_json())
    assert card["config"]["intensity"] == "local"
    (tmp_path / "tracker.json").write_text(json.dumps(card))
    assert read_card(tmp_path).config.intensity == "local"
    del card["config"]["intensity"]  # a tracker.json written before the setting existed
    (tmp_path / "tracker.json").write_text(json.dumps(card))
    assert read_card(tmp_path).config.intensity == "cache"
    assert TrackerConfig().intensity == "cache"
    assert TrackerConfig().steps == 4000


def test_tracker_predict_feeds_the_network_its_own_scale() -> None:
    import torch

    from medseq.tracker.segment import Tracker

    seen: list[np.ndarray] = []

    class Recorder(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.numpy().copy())
            return x[:, :1]

    for config in (LOCAL, TrackerConfig(intensity="cache")):
        card = TrackerCard(config=config, preprocess_config=PP)
        Tracker(card, Recorder(), torch.device("cpu")).predict(_inputs())
    np.testing.assert_allclose(seen[0], standardise_inputs(_inputs(), LOCAL, PP))
    np.testing.assert_allclose(seen[1], _inputs())
