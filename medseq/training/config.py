"""``TrainConfig``: every training setting, validated; YAML file + CLI overrides via
:func:`medseq.config.load_config`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medseq.contracts.run import LESION_MEASUREMENTS, SCAN_MEASUREMENTS, ModelConfig, ModelInputs


class OptimiserConfig(BaseModel):
    """AdamW."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-2, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad_norm: float | None = Field(default=1.0, gt=0)
    """Gradient-norm clipping (recurrent layers explode over long sequences); null turns it off."""


class ScheduleConfig(BaseModel):
    """Learning rate: linear warm-up, then cosine decay to ``min_lr_ratio * lr``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = Field(default=1.0, ge=0)
    min_lr_ratio: float = Field(default=0.05, ge=0, le=1)


class AugmentConfig(BaseModel):
    """Augmentations, drawn once per patient and applied identically to all its crops."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    flip: float = Field(default=0.5, ge=0, le=1)
    """Probability of flipping along each axis."""
    rotate_degrees: float = Field(default=10.0, ge=0, le=45)
    """Maximum rotation about each axis."""
    rotate_probability: float = Field(default=0.5, ge=0, le=1)
    intensity_shift: float = Field(default=0.006, ge=0)
    """Maximum additive shift of the normalised image channel (0.006 is 3 HU in the default CT
    window of 500 HU: the response cue is about 10 HU, so larger shifts drown it)."""
    intensity_scale: float = Field(default=0.01, ge=0)
    """Maximum relative scaling of the normalised image channel."""


class EarlyStopConfig(BaseModel):
    """Stop a fold when the validation metric has not improved for ``patience`` epochs."""

    model_config = ConfigDict(extra="forbid")

    monitor: Literal["val_response_loss", "val_loss", "val_auc"] = "val_response_loss"
    """``val_response_loss``: the response objective alone (the forecast head does not steer
    model selection); ``val_loss`` adds the forecast loss; ``val_auc`` the validation AUC."""
    patience: int = Field(default=8, ge=1)
    val_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    """Share of each fold's training patients held out for early stopping (stratified)."""


class LabelConfig(BaseModel):
    """What the label means (``docs/train.md`` "Labels for early prediction")."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["best_after", "landmark", "progression", "overall"] = "best_after"
    """``best_after``: best RECIST response over the scans after the observed ones;
    ``landmark``: the response of the scan nearest ``landmark_days``; ``progression``: time
    from the last observed scan to progression (censored at the last scan); ``overall``: best
    response over all scans (labels a CSV gives are used whatever the kind)."""
    landmark_days: float = Field(default=180.0, gt=0)
    """``landmark``: the day from baseline whose response is the label."""
    landmark_window_days: float = Field(default=45.0, gt=0)
    """``landmark``: how far from ``landmark_days`` the landmark scan may lie."""


class TrainConfig(BaseModel):
    """Everything ``medseq train`` does; ``medseq train --print-config`` shows the defaults."""

    model_config = ConfigDict(extra="forbid")

    model: ModelConfig = Field(default_factory=lambda: ModelConfig())
    optimiser: OptimiserConfig = Field(default_factory=lambda: OptimiserConfig())
    schedule: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig())
    augment: AugmentConfig = Field(default_factory=lambda: AugmentConfig())
    early_stopping: EarlyStopConfig = Field(default_factory=lambda: EarlyStopConfig())
    epochs: int = Field(default=40, ge=1)
    """Epochs per fold when ``steps`` is null; the most the final model is trained for."""
    steps: int | None = Field(default=None, ge=1)
    """Optimiser steps per fold (the schedule spans them); overrides ``epochs`` for the folds."""
    loss: Literal["auto", "bce", "ce", "mse", "focal"] = "auto"
    """Response loss: ``auto`` is bce (binary task), ce (RECIST task) or the Cox partial
    likelihood (progression labels); ``mse`` is the squared error of the sigmoid output (the
    seed reference's Dense + mean squared error); ``focal`` the binary focal loss."""
    focal_gamma: float = Field(default=2.0, ge=0)
    batch_size: int = Field(default=4, ge=1)
    """Patients per optimiser step and process."""
    folds: int = Field(default=5, ge=2)
    seed: int = Field(default=0, ge=0)
    observe: int | None = Field(default=2, ge=1)
    """Train and predict from the first k scans only (early prediction); null uses every scan
    (``model.json``'s ``inputs.observe``)."""
    label: LabelConfig = Field(default_factory=lambda: LabelConfig())
    """What the label means; the early kinds need ``observe``."""
    input_size: int | None = Field(default=None, ge=4)
    """Resize each cached crop to this edge length (area averaging) before the encoder; null
    keeps the cache's size. 16 costs about 1/8 of 32 (``model.json``'s ``inputs.input_size``)."""
    forecast_weight: float = Field(default=0.3, ge=0)
    """Weight of the burden-forecast loss beside the response loss."""
    class_weighting: bool = True
    """Weight classes inversely to their frequency in each training set."""
    final_model: bool = True
    """Also train the all-patient model for the median best epoch count of the folds."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "bf16", "off"] = "auto"
    """bf16 autocast: ``auto`` uses it on CUDA only (CPU keeps fp32 for exact reproducibility)."""
    channels_last: bool = True
    """channels_last_3d memory format for the encoder (x0.8 step time on CPU)."""
    workers: int = Field(default=0, ge=0)
    """DataLoader worker processes (0: load in the training process)."""
    threads: int | None = Field(default=None, ge=1)
    """torch CPU threads; null keeps torch's default."""
    deterministic: bool = True
    """``torch.use_deterministic_algorithms`` (same seed -> same weights on CPU)."""


    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.model.bidirectional and (self.observe is not None or _early(self)):
            raise ValueError("model.bidirectional reads later scans: it is for retrospective "
                             "analysis (observe: null, label.kind: overall) only")
        if self.model.bidirectional and self.model.time == "decay":
            raise ValueError("model.bidirectional does not combine with time: decay")
        if self.loss == "ce" and self.model.task != "recist":
            raise ValueError("loss ce is for the recist task; the binary task uses bce, mse "
                             "or focal")
        if self.loss in ("bce", "mse", "focal") and self.model.task == "recist":
            raise ValueError(f"loss {self.loss} is binary; the recist task uses ce")
        return self


def _early(config: TrainConfig) -> bool:
    return config.label.kind != "overall"


def model_inputs(config: TrainConfig, crop_shape: list[int] | None,
                 preprocess: dict[str, Any] | None = None, modality: str = "CT"
                 ) -> ModelInputs:
    """The input specification a run trains with and writes into every model card."""
    measured: dict[str, Any] = {}
    if config.model.measurements:
        from medseq.models.measurements import geometry_from_preprocess

        geometry = geometry_from_preprocess(preprocess or {}, modality)
        measured = {
            "lesion_measurements": list(LESION_MEASUREMENTS),
            "scan_measurements": list(SCAN_MEASUREMENTS),
            "crop_spacing_mm": geometry.spacing_mm,
            "hu_offset": geometry.hu_offset, "hu_scale": geometry.hu_scale,
        }
    return ModelInputs(observe=config.observe, crop_shape=crop_shape,
                       input_size=config.input_size, **measured)
