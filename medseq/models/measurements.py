"""Lesion measurements from the cached crops: what the model reads beside the image.

Each cached crop is a cube of isotropic voxels (``crop_spacing`` mm, RAS axes, so axis 2 is the
patient's long axis) centred on a baseline target, holding the normalised image and the lesion
mask of one scan. From it this module measures, per lesion and scan: volume, longest axial
diameter and the perpendicular short axis (Feret extents over 16 in-plane directions), mean
intensity of the whole lesion, of its rim (the outer voxel shell) and of its core (what is left
after eroding two voxels), in HU for CT. Changes to baseline and to the previous scan are derived
from those. The same function serves training and inference, so a model always sees the numbers
it was trained on. Measurements are of the crop (a lesion larger than the crop is truncated);
RECIST measurements of record come from ``medseq track``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medseq.contracts.run import CLASSICAL_FEATURES, LESION_MEASUREMENTS, SCAN_MEASUREMENTS

__all__ = ["CLASSICAL_FEATURES", "LESION_FEATURES", "TIMEPOINT_FEATURES", "CropGeometry",
           "Measurements", "classical_features", "geometry_from_preprocess",
           "lesion_features", "measure_crops", "timepoint_features"]

LESION_FEATURES = LESION_MEASUREMENTS
TIMEPOINT_FEATURES = SCAN_MEASUREMENTS

_DIRECTIONS = 16
_EPS_ML = 1e-3
_HU_SCALE = 100.0
_HU_CHANGE_SCALE = 10.0
_DIAMETER_SCALE = 50.0
_LESION_SCALE = 5.0


@dataclass(frozen=True)
class CropGeometry:
    """How to read a crop: voxel size and the map from the image channel back to HU."""

    spacing_mm: float
    hu_offset: float = 0.0
    hu_scale: float = 1.0
    """HU = hu_offset + hu_scale * value (CT window inverse; identity for MR z-scores)."""


@dataclass(frozen=True)
class Measurements:
    """Raw measurements of a patient's crops, [T, L] each (NaN intensities where absent)."""

    volume_ml: np.ndarray
    longest_mm: np.ndarray
    short_mm: np.ndarray
    mean_hu: np.ndarray
    rim_hu: np.ndarray
    core_hu: np.ndarray


def geometry_from_preprocess(config: Mapping[str, Any], modality: str = "CT") -> CropGeometry:
    """The crop geometry from a cache's preprocessing settings (the manifest's ``config``)."""
    from medseq.preprocess.config import PreprocessConfig
    from medseq.preprocess.normalize import ct_window_and_range

    spacing = float(config.get("crop_spacing", PreprocessConfig.model_fields["crop_spacing"]
                               .default))
    if modality.upper() != "CT":
        return CropGeometry(spacing_mm=spacing)
    (low, high), (out_low, out_high) = ct_window_and_range(config)
    scale = (high - low) / (out_high - out_low)
    return CropGeometry(spacing_mm=spacing, hu_offset=low - out_low * scale, hu_scale=scale)


def measure_crops(crops: np.ndarray, geometry: CropGeometry) -> Measurements:
    """Measure every lesion crop of ``crops`` [T, L, C, S, S, S] (image, mask channels)."""
    from scipy import ndimage

    t_count, l_count = crops.shape[:2]
    shape = (t_count, l_count)
    volume, longest, short = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    mean_hu, rim_hu, core_hu = (np.full(shape, np.nan) for _ in range(3))
    voxel_ml = geometry.spacing_mm ** 3 / 1000.0
    projections = _projections(crops.shape[-3], crops.shape[-2], geometry.spacing_mm)
    for t in range(t_count):
        for n in range(l_count):
            mask = np.asarray(crops[t, n, 1], dtype=np.float32) >= 0.5
            count = int(mask.sum())
            if count == 0:
                continue
            image = geometry.hu_offset + geometry.hu_scale * np.asarray(crops[t, n, 0],
                                                                        dtype=np.float64)
            volume[t, n] = count * voxel_ml
            longest[t, n], short[t, n] = _axial_extents(mask, projections, geometry.spacing_mm)
            inner = ndimage.binary_erosion(mask)
            core = ndimage.binary_erosion(inner)
            mean_hu[t, n] = float(image[mask].mean())
            rim = mask & ~inner
            rim_hu[t, n] = float(image[rim].mean()) if rim.any() else mean_hu[t, n]
            core_region = core if core.any() else (inner if inner.any() else mask)
            core_hu[t, n] = float(image[core_region].mean())
    return Measurements(volume, longest, short, mean_hu, rim_hu, core_hu)


def lesion_features(m: Measurements, days: Sequence[float]) -> np.ndarray:
    """[T, L, len(LESION_FEATURES)] float32: the scaled per-lesion inputs."""
    t_count, l_count = m.volume_ml.shape
    out = np.zeros((t_count, l_count, len(LESION_FEATURES)), dtype=np.float32)
    present = m.volume_ml > 0
    log_v = np.log(m.volume_ml + _EPS_ML)
    for t in range(t_count):
        prev = max(t - 1, 0)
        dt = max(float(days[t]) - float(days[prev]), 1.0) if t > 0 else 0.0
        ratio_prev = log_v[t] - log_v[prev]
        diameter_ratio = np.where(m.longest_mm[0] > 0,
                                  m.longest_mm[t] / np.maximum(m.longest_mm[0], 1e-6) - 1.0, 0.0)
        columns = [
            present[t].astype(float),
            np.log1p(m.volume_ml[t]),
            m.longest_mm[t] / _DIAMETER_SCALE,
            m.short_mm[t] / _DIAMETER_SCALE,
            _zero_nan(m.mean_hu[t]) / _HU_SCALE,
            _zero_nan(m.rim_hu[t]) / _HU_SCALE,
            _zero_nan(m.core_hu[t]) / _HU_SCALE,
            log_v[t] - log_v[0],
            ratio_prev,
            ratio_prev / (dt / 100.0) if t > 0 else np.zeros(l_count),
            diameter_ratio,
            _zero_nan(m.mean_hu[t] - m.mean_hu[0]) / _HU_CHANGE_SCALE,
            _zero_nan(m.rim_hu[t] - m.rim_hu[0]) / _HU_CHANGE_SCALE,
            _zero_nan(m.core_hu[t] - m.core_hu[0]) / _HU_CHANGE_SCALE,
        ]
        out[t] = np.stack(columns, axis=-1)
    return out


def timepoint_features(m: Measurements, burden_ml: Sequence[float | None],
                       new_lesions: Sequence[bool] | None = None) -> np.ndarray:
    """[T, len(TIMEPOINT_FEATURES)] float32; a missing whole-mask burden falls back to the sum
    of the crops' lesion volumes."""
    t_count = m.volume_ml.shape[0]
    totals = np.array([
        float(b) if b is not None and math.isfinite(float(b)) else float(m.volume_ml[t].sum())
        for t, b in enumerate(list(burden_ml)[:t_count])
    ] + [float(m.volume_ml[t].sum()) for t in range(len(burden_ml), t_count)])
    flags = [bool(v) for v in (new_lesions or [])][:t_count]
    flags += [False] * (t_count - len(flags))
    log_total = np.log(np.maximum(totals, 0.0) + _EPS_ML)
    out = np.stack([
        np.log1p(np.maximum(totals, 0.0)),
        log_total - log_total[0],
        (m.volume_ml > 0).sum(axis=1) / _LESION_SCALE,
        np.array(flags, dtype=float),
    ], axis=-1)
    return out.astype(np.float32)


def classical_features(m: Measurements, days: Sequence[float], observed: int) -> dict[str, float]:
    """The classical feature model's inputs: the last observed scan against baseline."""
    k = max(1, min(observed, m.volume_ml.shape[0])) - 1
    v0, vk = float(m.volume_ml[0].sum()), float(m.volume_ml[k].sum())
    d0, dk = float(m.longest_mm[0].sum()), float(m.longest_mm[k].sum())
    log_ratio = math.log((vk + _EPS_ML) / (v0 + _EPS_ML))
    span = max(float(days[k]) - float(days[0]), 1.0) if k > 0 else 0.0
    weights = m.volume_ml[0]
    return {
        "log_burden_ratio": log_ratio,
        "sod_ratio": dk / d0 - 1.0 if d0 > 0 else 0.0,
        "mean_hu_change": _weighted_change(m.mean_hu, weights, k),
        "rim_hu_change": _weighted_change(m.rim_hu, weights, k),
        "core_hu_change": _weighted_change(m.core_hu, weights, k),
        "log_burden_baseline": math.log1p(v0),
        "lesion_count": float((m.volume_ml[0] > 0).sum()),
        "growth_per_100d": log_ratio / (span / 100.0) if k > 0 else 0.0,
    }


def _weighted_change(values: np.ndarray, weights: np.ndarray, k: int) -> float:
    """Baseline-volume-weighted mean change of lesions measurable at baseline and scan k."""
    both = np.isfinite(values[0]) & np.isfinite(values[k]) & (weights > 0)
    if k == 0 or not both.any():
        return 0.0
    return float(np.average(values[k][both] - values[0][both], weights=weights[both]))


def _zero_nan(values: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)


def _projections(nx: int, ny: int, spacing: float) -> np.ndarray:
    """[D, nx, ny] position of every in-plane voxel centre along D directions (mm)."""
    angles = np.arange(_DIRECTIONS) * math.pi / _DIRECTIONS
    x = np.arange(nx)[:, None] * spacing
    y = np.arange(ny)[None, :] * spacing
    return np.stack([x * math.cos(a) + y * math.sin(a) for a in angles])


def _axial_extents(mask: np.ndarray, projections: np.ndarray, spacing: float
                   ) -> tuple[float, float]:
    """Longest axial Feret diameter and the extent perpendicular to it, over all slices (mm)."""
    best_long, best_short = 0.0, 0.0
    half = _DIRECTIONS // 2
    for z in np.flatnonzero(mask.any(axis=(0, 1))):
        plane = mask[:, :, z]
        values = projections[:, plane]  # [D, voxels]
        extents = values.max(axis=1) - values.min(axis=1) + spacing
        d = int(np.argmax(extents))
        if extents[d] > best_long:
            best_long = float(extents[d])
            best_short = float(extents[(d + half) % _DIRECTIONS])
    return best_long, best_short
