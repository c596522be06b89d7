"""An optional intensity scale for the tracker: local soft-tissue contrast.

The cache maps CT through a wide window (default [-200, 300] HU -> [0, 1]), so a lesion 20 HU
away from its organ differs by 0.04 units. With ``intensity: local`` every image crop
(follow-up and baseline channels) is shifted by its own reference, the median of its voxels
strictly inside the window (soft tissue: no air, lung or bone clipped to the window's ends),
divided by ``intensity_scale_hu`` (converted to the cache's units with the manifest's
``ct_window``/``ct_range``) and clipped to ±``intensity_clip``; a crop that is all zeros (an
absent channel) stays zeros. Training, ``track``/``predict --tracker``, baseline prompts and
detection all go through :func:`standardise_inputs` (:func:`medseq.tracker.train.train_tracker`
and :meth:`medseq.tracker.segment.Tracker.predict`). The default, ``intensity: cache``, feeds
the cache's values unchanged: on the tracking benchmark the local scale was no better
(docs/track.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from medseq.preprocess.normalize import ct_window_and_range
from medseq.tracker.config import TrackerConfig
from medseq.tracker.prompt import CHANNELS

IMAGE_CHANNELS = (CHANNELS.index("follow_up"), CHANNELS.index("baseline"))


def units_per_hu(preprocess_config: Mapping[str, Any]) -> float:
    """Cache units per HU of the CT window the cache was made with."""
    (low, high), (out_low, out_high) = ct_window_and_range(preprocess_config)
    return (out_high - out_low) / (high - low)


def cache_value(preprocess_config: Mapping[str, Any], hu: float) -> float:
    """``hu`` in the cache's CT units."""
    (low, _), (out_low, _) = ct_window_and_range(preprocess_config)
    return out_low + (hu - low) * units_per_hu(preprocess_config)


def standardise_crop(values: np.ndarray, scale: float, clip: float, window: tuple[float, float]
                     ) -> np.ndarray:
    """(values - soft-tissue median) / scale, clipped to ±clip; all zeros stay zeros."""
    values = values.astype(np.float32, copy=False)
    if not values.any():
        return np.zeros_like(values, dtype=np.float32)
    low, high = window
    margin = 1e-3 * (high - low)
    inside = values[(values > low + margin) & (values < high - margin)]
    reference = float(np.median(inside)) if inside.size else float(np.median(values))
    out = (values - np.float32(reference)) / np.float32(scale)
    return np.clip(out, -clip, clip).astype(np.float32)


def standardise_inputs(inputs: np.ndarray, config: TrackerConfig,
                       preprocess_config: Mapping[str, Any]) -> np.ndarray:
    """Network inputs [N, 4, S, S, S] with the image channels on the tracker's scale (a copy;
    unchanged for ``intensity: cache``)."""
    if config.intensity == "cache":
        return inputs
    per_hu = units_per_hu(preprocess_config)
    _, window = ct_window_and_range(preprocess_config)
    scale = config.intensity_scale_hu * per_hu
    out = np.array(inputs, dtype=np.float32, copy=True)
    for n in range(out.shape[0]):
        for channel in IMAGE_CHANNELS:
            out[n, channel] = standardise_crop(out[n, channel], scale, config.intensity_clip,
                                               window)
    return out
