"""Rigid registration of a follow-up scan to the baseline (SimpleITK, RAS+ matrices out).

Recipe (PERFORMANCE.md has the measurements behind it): both scans are binned to about
``spacing_mm`` voxels; the translation starts from the difference of the body centroids (the
"moments" initialisation, on a body mask so CT air at -1000 HU weighs nothing); a multi-resolution
pyramid drives Mattes mutual information with RegularStepGradientDescent on ~1% random samples
(the tutorial GradientDescent stops early, millimetres off). When the optimiser ends worse than
it started, the start was the best alignment and is kept. A registration counts as failed when
the body masks overlap less than ``min_body_dice`` afterwards; then the image-centre
initialisation is tried too, and the better result is kept and flagged. Small scans get fewer
binning and pyramid levels (see :func:`_levels`) instead of ITK errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import SimpleITK as sitk  # noqa: N813 - the name every ITK user knows

from medseq.contracts.cache import RegistrationRecord
from medseq.io.volume import Volume
from medseq.preprocess.config import RegistrationConfig
from medseq.preprocess.resample import FLIP, to_sitk

Modality = Literal["CT", "MR"]
CT_CLAMP = (-1000.0, 1500.0)
"""HU range seen by the metric: metal and dense bone must not stretch the histogram."""
CT_BODY_HU = -500.0
MATRIX_DECIMALS = 6
METRIC_TOLERANCE = 0.01
"""A final metric this much (relative) above the initial one still counts as not worse."""
MIN_BINNED_VOXELS = 16
"""Binning never leaves an axis shorter than this (an axis already shorter is not binned)."""
MIN_LEVEL_VOXELS = 4
"""ITK smooths every pyramid level with a recursive Gaussian, which needs at least 4 voxels
along each axis: levels that would shrink an image below that are left out."""


@dataclass(frozen=True)
class RegistrationResult:
    """A rigid transform between two scans and how well it was found."""

    transform_to_baseline: np.ndarray
    """4x4 RAS+ matrix M with x_baseline = M @ x_followup."""
    record: RegistrationRecord

    @property
    def baseline_to_followup(self) -> np.ndarray:
        """The inverse: where a baseline point lies in the follow-up's world."""
        return np.linalg.inv(self.transform_to_baseline)


def identity_result() -> RegistrationResult:
    """What the baseline gets: itself, unregistered."""
    return RegistrationResult(transform_to_baseline=np.eye(4), record=RegistrationRecord())


@dataclass(frozen=True)
class PreparedImage:
    """A scan binned for registration, with its body mask (kept for all follow-ups)."""

    image: sitk.Image
    body: sitk.Image
    half: sitk.Image
    """Half resolution again: where the before/after metric of the failure check is taken."""


def prepare_fixed(baseline: Volume, *, modality: Modality,
                  config: RegistrationConfig) -> PreparedImage:
    """Bin the baseline once; every follow-up of the patient registers onto it."""
    image = _prepare(baseline, modality=modality, spacing_mm=config.spacing_mm)
    return PreparedImage(image=image, body=_body_mask(image, modality), half=_half(image))


def register_rigid(fixed_scan: PreparedImage, followup: Volume, *, modality: Modality,
                   config: RegistrationConfig) -> RegistrationResult:
    """Register ``followup`` rigidly onto the prepared baseline; failures are flagged, not raised.

    Both scans keep their own geometry (any orientation); the transform is in RAS+ mm.
    """
    with _threads(1 if config.deterministic else None):
        return _register(fixed_scan, followup, modality=modality, config=config)


def _register(fixed_scan: PreparedImage, followup: Volume, *, modality: Modality,
              config: RegistrationConfig) -> RegistrationResult:
    fixed, fixed_body = fixed_scan.image, fixed_scan.body
    moving = _prepare(followup, modality=modality, spacing_mm=config.spacing_mm)
    moving_body = _body_mask(moving, modality)
    halves = (fixed_scan.half, _half(moving))
    best: tuple[sitk.Transform, RegistrationRecord] | None = None
    for init in ("moments", "geometry"):
        initial = _initial_transform(fixed, moving, fixed_body, moving_body, init)
        transform, record = _run(fixed, moving, initial, config, halves=halves)
        record.initialization = init  # type: ignore[attr-defined]
        if _worse(record):
            # The start was already the best alignment the metric sees (the same scan twice,
            # or small scans whose noisy metric leads the optimiser astray): keep it, and let
            # the body-overlap check judge it.
            transform = initial
            record.final_metric = record.initial_metric
            record.message = (f"kept the starting alignment ({init}): the optimiser found "
                              "none better")
        _check(record, fixed_body, moving_body, transform, config)
        if best is None or _better(record, best[1]):
            best = (transform, record)
        if record.ok:
            break
    assert best is not None  # the loop always runs
    transform, record = best
    grid_to_source = FLIP @ _as_matrix(transform) @ FLIP
    # Rounded, and used rounded everywhere: ITK's threads differ in the last bits (1e-14) from
    # run to run, which must not flip a voxel of the cached files between identical runs.
    matrix = np.round(np.linalg.inv(grid_to_source), MATRIX_DECIMALS)
    return RegistrationResult(transform_to_baseline=matrix, record=record)


@contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """ITK's default thread count for the block (the registration method's own setting does
    not reach the filters and metric it creates)."""
    if count is None:
        yield
        return
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(count)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def _prepare(volume: Volume, *, modality: Modality, spacing_mm: float) -> sitk.Image:
    """Bin to about ``spacing_mm`` (averaging, so no aliasing) and make float32 for the metric."""
    image = to_sitk(volume.array, volume.affine)
    factors = [max(1, min(round(spacing_mm / s), n // MIN_BINNED_VOXELS))
               for s, n in zip(image.GetSpacing(), image.GetSize(), strict=True)]
    if max(factors) > 1:
        image = sitk.BinShrink(image, factors)
    image = sitk.Cast(image, sitk.sitkFloat32)
    if modality == "CT":
        image = sitk.Clamp(image, sitk.sitkFloat32, *CT_CLAMP)
    return image


def _half(image: sitk.Image) -> sitk.Image:
    factors = [2 if n >= 32 else 1 for n in image.GetSize()]
    return sitk.BinShrink(image, factors) if max(factors) > 1 else image


def _body_mask(image: sitk.Image, modality: Modality) -> sitk.Image:
    if modality == "CT":
        return sitk.BinaryThreshold(image, CT_BODY_HU, 1e9, 1, 0)
    # Otsu's threshold separates MR signal from background air.
    return sitk.OtsuThreshold(image, 0, 1)


def _initial_transform(fixed: sitk.Image, moving: sitk.Image, fixed_body: sitk.Image,
                       moving_body: sitk.Image, init: str) -> sitk.Euler3DTransform:
    if init == "moments":
        fixed_centre = _centroid(fixed_body) or _centre(fixed)
        moving_centre = _centroid(moving_body) or _centre(moving)
    else:
        fixed_centre, moving_centre = _centre(fixed), _centre(moving)
    transform = sitk.Euler3DTransform()
    transform.SetCenter(fixed_centre)
    transform.SetTranslation((np.asarray(moving_centre) - np.asarray(fixed_centre)).tolist())
    return transform


def _centroid(mask: sitk.Image) -> tuple[float, float, float] | None:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    if not stats.HasLabel(1):
        return None
    x, y, z = stats.GetCentroid(1)
    return float(x), float(y), float(z)


def _centre(image: sitk.Image) -> tuple[float, float, float]:
    size = np.asarray(image.GetSize(), dtype=np.float64)
    x, y, z = image.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist())
    return float(x), float(y), float(z)


def _method(fixed: sitk.Image, config: RegistrationConfig, *, gradients: bool = True
            ) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=config.histogram_bins)
    n_voxels = float(np.prod(fixed.GetSize()))
    fraction = min(1.0, max(config.sampling_percentage, config.min_samples / n_voxels))
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(fraction, config.seed)
    method.SetInterpolator(sitk.sitkLinear)
    if not (gradients and config.gradient_images):
        method.MetricUseFixedImageGradientFilterOff()
        method.MetricUseMovingImageGradientFilterOff()
    return method


def _run(fixed: sitk.Image, moving: sitk.Image, initial: sitk.Euler3DTransform,
         config: RegistrationConfig, *, halves: tuple[sitk.Image, sitk.Image]
         ) -> tuple[sitk.Transform, RegistrationRecord]:
    method = _method(fixed, config)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=config.learning_rate, minStep=config.min_step,
        numberOfIterations=config.iterations, relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    shrink_factors, sigmas = _levels(config, fixed, moving)
    method.SetShrinkFactorsPerLevel(shrink_factors)
    method.SetSmoothingSigmasPerLevel(sigmas)
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetInitialTransform(sitk.Euler3DTransform(initial), inPlace=False)
    initial_metric = _metric(*halves, initial, config)
    final = method.Execute(fixed, moving)
    final_metric = _metric(*halves, final, config)
    record = RegistrationRecord(
        method="rigid", metric="mattes_mi", initial_metric=round(initial_metric, 6),
        final_metric=round(final_metric, 6), iterations=int(method.GetOptimizerIteration()),
        ok=True, message=method.GetOptimizerStopConditionDescription()[:200],
    )
    return final, record


def _levels(config: RegistrationConfig, *images: sitk.Image) -> tuple[list[int], list[float]]:
    """The configured pyramid without the levels too coarse for these (small) images."""
    smallest = min(min(image.GetSize()) for image in images)
    levels = [(factor, sigma) for factor, sigma in zip(config.shrink_factors,
                                                       config.smoothing_sigmas, strict=True)
              if smallest // factor >= MIN_LEVEL_VOXELS]
    if not levels:
        levels = [(1, 0.0)]
    return [factor for factor, _ in levels], [sigma for _, sigma in levels]


def _metric(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform,
            config: RegistrationConfig) -> float:
    """The metric for ``transform`` (lower is better) on the same samples each time.

    Taken on half-resolution images without gradient images: setting a metric up costs a pass
    over every voxel, which at full resolution was half of a whole registration's time.
    """
    method = _method(fixed, config, gradients=False)
    method.SetInitialTransform(transform, inPlace=False)
    return float(method.MetricEvaluate(fixed, moving))


def _check(record: RegistrationRecord, fixed_body: sitk.Image, moving_body: sitk.Image,
           transform: sitk.Transform, config: RegistrationConfig) -> None:
    """Flag a failed registration: bodies that do not overlap (a metric that got worse never
    reaches here: the start is kept instead)."""
    warped = sitk.Resample(moving_body, fixed_body, transform, sitk.sitkNearestNeighbor, 0)
    fixed_arr = sitk.GetArrayViewFromImage(fixed_body).astype(bool)
    warped_arr = sitk.GetArrayViewFromImage(warped).astype(bool)
    total = int(fixed_arr.sum()) + int(warped_arr.sum())
    dice = 2.0 * int(np.logical_and(fixed_arr, warped_arr).sum()) / total if total else 0.0
    record.body_dice = round(dice, 4)  # type: ignore[attr-defined]
    if dice < config.min_body_dice:
        record.ok = False
        record.message = f"registration failed: body overlap {dice:.2f} < {config.min_body_dice}"


def _worse(record: RegistrationRecord) -> bool:
    """True when the metric ended worse than it started (beyond :data:`METRIC_TOLERANCE`)."""
    initial, final = record.initial_metric or 0.0, record.final_metric or 0.0
    return final > initial + METRIC_TOLERANCE * abs(initial)


def _better(record: RegistrationRecord, other: RegistrationRecord) -> bool:
    if record.ok != other.ok:
        return record.ok
    return (record.final_metric or 0.0) < (other.final_metric or 0.0)


def _as_matrix(transform: sitk.Transform) -> np.ndarray:
    """The 4x4 matrix of an affine ITK transform (LPS, fixed -> moving points)."""
    origin = np.asarray(transform.TransformPoint((0.0, 0.0, 0.0)))
    matrix = np.eye(4)
    for axis in range(3):
        unit = [0.0, 0.0, 0.0]
        unit[axis] = 1.0
        matrix[:3, axis] = np.asarray(transform.TransformPoint(unit)) - origin
    matrix[:3, 3] = origin
    return matrix
