"""Intensity normalisation for the model's crops (cached volumes keep their raw values).

CT: Hounsfield units clipped to a window and scaled linearly onto a range, the same for every
scan. MR: z-score with the mean and standard deviation inside the body of that scan, since MR
intensities have no absolute scale; the statistics are recorded per timepoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from medseq.preprocess.config import PreprocessConfig

Modality = Literal["CT", "MR"]
CT_AIR_HU = -500.0
"""An image holding values below this is CT (air); MR has no negative intensities."""
MAX_STAT_VOXELS = 2_000_000
"""Body statistics use an evenly strided subset of at most this many voxels (speed, memory)."""


class IntensityRecord(BaseModel):
    """How one timepoint's crops were normalised (stored in the manifest)."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["ct_window", "mr_zscore"]
    low: float | None = None
    high: float | None = None
    mean: float | None = None
    std: float | None = None


def detect_modality(declared: str, array: np.ndarray, setting: str = "auto") -> Modality:
    """CT or MR: the config's choice, else the DICOM Modality, else CT when air-like values occur.

    PET and other modalities are normalised like MR (z-score in the body).
    """
    if setting in ("CT", "MR"):
        return "CT" if setting == "CT" else "MR"
    if declared.upper() == "CT":
        return "CT"
    if declared:
        return "MR"
    sample = _subsample(array)
    return "CT" if sample.size and float(sample.min()) < CT_AIR_HU else "MR"


def intensity_record(array: np.ndarray, modality: Modality,
                     config: PreprocessConfig) -> IntensityRecord:
    """The normalisation of one scan: the fixed CT window, or its MR body statistics."""
    if modality == "CT":
        low, high = config.ct_window
        return IntensityRecord(kind="ct_window", low=low, high=high)
    sample = _subsample(array).astype(np.float32, copy=False)
    body = sample[sample > _otsu(sample)] if sample.size else sample
    if body.size < 10:
        body = sample
    mean = float(body.mean()) if body.size else 0.0
    std = float(body.std()) if body.size else 1.0
    return IntensityRecord(kind="mr_zscore", mean=round(mean, 4), std=round(max(std, 1e-6), 4))


def ct_window_and_range(settings: Mapping[str, Any]) -> tuple[tuple[float, float],
                                                               tuple[float, float]]:
    """``(ct_window, ct_range)`` of a cache's preprocessing settings (the manifest's
    ``config``), with :class:`PreprocessConfig`'s defaults for a missing key: what readers of a
    cache need to map its CT crops back to HU."""
    fields = PreprocessConfig.model_fields
    low, high = settings.get("ct_window") or fields["ct_window"].default
    out_low, out_high = settings.get("ct_range") or fields["ct_range"].default
    return (float(low), float(high)), (float(out_low), float(out_high))


def normalize(values: np.ndarray, record: IntensityRecord,
              config: PreprocessConfig) -> np.ndarray:
    """Normalised float32 copy of ``values`` (a crop)."""
    values = values.astype(np.float32, copy=True)
    if record.kind == "ct_window":
        low, high = config.ct_window
        out_low, out_high = config.ct_range
        np.clip(values, low, high, out=values)
        values -= low
        values *= (out_high - out_low) / (high - low)
        values += out_low
        return values
    values -= np.float32(record.mean or 0.0)
    values /= np.float32(record.std or 1.0)
    np.clip(values, -config.mr_clip_z, config.mr_clip_z, out=values)
    return values


def _subsample(array: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil((array.size / MAX_STAT_VOXELS) ** (1 / 3))))
    return np.asarray(array[::step, ::step, ::step]).ravel()


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1D sample (background air vs body)."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist).astype(np.float64)
    total = weight[-1]
    mean = np.cumsum(hist * centres)
    between = (mean[-1] * weight / total - mean) ** 2 / np.maximum(weight * (total - weight), 1)
    return float(centres[int(np.argmax(between[:-1]))]) if bins > 1 else float(centres[0])
