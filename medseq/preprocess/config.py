"""Settings of ``medseq preprocess`` (a YAML file given with ``--config``, all keys optional).

The hash of these settings (:func:`medseq.config.config_hash`) is part of every patient's input
hash, so changing any of them redoes the cache on the next run.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

PIPELINE_VERSION = 1
"""Bump when the pipeline's outputs change for the same settings, so caches are redone."""


class RegistrationConfig(BaseModel):
    """Rigid registration of every follow-up to the baseline (SimpleITK)."""

    model_config = ConfigDict(extra="forbid")

    spacing_mm: float = Field(default=4.0, gt=0)
    """Images are binned (averaged) to about this spacing before registering: fast, and the
    mutual information landscape is smoother."""
    shrink_factors: list[int] = Field(default_factory=lambda: [4, 2, 1])
    smoothing_sigmas: list[float] = Field(default_factory=lambda: [2.0, 1.0, 0.0])
    """Gaussian smoothing per pyramid level, in voxels of the binned image."""
    histogram_bins: int = Field(default=50, ge=8)
    sampling_percentage: float = Field(default=0.01, gt=0, le=1)
    min_samples: int = Field(default=5000, ge=100)
    """The sampling fraction is raised so that small images still get this many samples."""
    iterations: int = Field(default=200, ge=1)
    learning_rate: float = Field(default=2.0, gt=0)
    """Initial step of RegularStepGradientDescent (mm, after physical-shift scaling)."""
    min_step: float = Field(default=1e-3, gt=0)
    gradient_images: bool = True
    """Metric gradients from smoothed gradient images (more accurate on coarse scans) rather
    than finite differences at the sampled points (faster)."""
    seed: int = Field(default=1, ge=1)
    """Seed of the random metric sampling, so the same inputs give the same transform (ITK
    reads 0 as "seed from the clock")."""
    deterministic: bool = True
    """Register on one thread: ITK's multi-threaded metric sums in a varying order, and over
    ~100 iterations that moves the result by up to 1e-4 mm between identical runs. Parallelism
    comes from ``--workers`` instead; ``false`` uses every core for one registration."""
    min_body_dice: float = Field(default=0.85, ge=0, le=1)
    """Failure check: the body masks must overlap at least this much after registration."""
    on_failure: Literal["fail", "keep"] = "fail"
    """``fail``: a failed registration fails the patient; ``keep``: flag it ``ok=false``, go on."""

    @model_validator(mode="after")
    def _levels_match(self) -> RegistrationConfig:
        if len(self.shrink_factors) != len(self.smoothing_sigmas) or not self.shrink_factors:
            raise ValueError("shrink_factors and smoothing_sigmas need the same, non-zero length")
        return self


class PreprocessConfig(BaseModel):
    """Everything that decides what ``preprocess`` writes."""

    model_config = ConfigDict(extra="forbid")

    target_spacing: tuple[float, float, float] | None = None
    """Output voxel size (mm) along R, A, S; ``null``: the cohort's median spacing, computed
    once and kept in the manifest's ``fingerprint``."""
    modality: Literal["auto", "CT", "MR"] = "auto"
    """``auto``: the DICOM Modality, else CT when the image holds air-like values (< -500)."""
    ct_window: tuple[float, float] = (-200.0, 300.0)
    """CT crops: HU clipped to this window ..."""
    ct_range: tuple[float, float] = (0.0, 1.0)
    """... and scaled linearly onto this range."""
    mr_clip_z: float = Field(default=5.0, gt=0)
    """MR crops: z-score inside the body, clipped to +- this."""
    crop_size: int = Field(default=32, ge=4, le=256)
    """Edge of the cubic lesion crops, in voxels."""
    crop_spacing: float = Field(default=2.0, gt=0)
    """Voxel size of the crops, in mm (isotropic)."""
    min_lesion_ml: float = Field(default=0.1, ge=0)
    """Connected components of the baseline mask below this volume are not targets."""
    max_targets: int = Field(default=5, ge=1)
    """Crops are cut around at most this many of the largest baseline lesions."""
    registration: RegistrationConfig = Field(default_factory=RegistrationConfig)
    roi: str | None = None
    """Masks from DICOM SEG / RTSTRUCT: a regular expression (case-insensitive search) on the
    SegmentLabel / ROIName choosing the lesions, each one label; ``null``: all (``--roi``).
    Left out of the settings (and their hash) while ``null``, so caches made before it stay
    valid."""

    @model_serializer(mode="wrap")
    def _without_unset_roi(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("roi") is None:
            data.pop("roi", None)
        return data

    @field_validator("roi")
    @classmethod
    def _valid_roi(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"not a valid regular expression ({err})") from None
        return value

    @field_validator("target_spacing")
    @classmethod
    def _positive_spacing(
        cls, value: tuple[float, float, float] | None
    ) -> tuple[float, float, float] | None:
        if value is not None and min(value) <= 0:
            raise ValueError("target_spacing must be positive")
        return value

    @field_validator("ct_window", "ct_range")
    @classmethod
    def _increasing(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] >= value[1]:
            raise ValueError("needs low < high")
        return value


def with_roi(config: PreprocessConfig, roi: str | None) -> PreprocessConfig:
    """``config`` with ``--roi`` (when given) in place of its ``roi``.

    Raises:
        UsageError: ``roi`` is not a valid regular expression.
    """
    if roi is None:
        return config
    from medseq.dicom_objects.labels import compile_roi_pattern

    compile_roi_pattern(roi)
    return config.model_copy(update={"roi": roi})
