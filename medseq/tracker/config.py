"""Settings of ``medseq train-tracker`` and the tracker card (``tracker.json``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medseq import __version__


class TrackerConfig(BaseModel):
    """Everything that decides what ``train-tracker`` learns (all keys optional in YAML)."""

    model_config = ConfigDict(extra="forbid")

    crop_size: int = Field(default=24, ge=8, le=128)
    """Edge of the cubic crops, in voxels of the cache grid; a multiple of 8."""
    widths: list[int] = Field(default_factory=lambda: [8, 16, 32, 64])
    """Channels per U-Net level (MONAI ``UNet``, one residual unit per block)."""
    full_resolution: bool = False
    """The tracker's U-Net keeps a level at the crop's own resolution (first stride 1; the
    detector is unchanged). MONAI's ``UNet`` otherwise starts with a stride-2 convolution and
    ends with a stride-2 transposed one, so no skip connection carries the input's full
    resolution to the output; about 2.6 times the tracker's compute."""
    prior_logit: float = Field(default=0.0, ge=0)
    """Initial weight of the baseline mask added to the logits (0, the default: a plain U-Net)."""
    prompt_sigma_mm: float = Field(default=6.0, gt=0)
    """Width of the prompt encoding exp(-d^2 / 2 sigma^2)."""
    prior_zoom: float = Field(default=0.0, ge=0, le=1)
    """Training: the baseline crop and mask of a tracking sample are scaled about the lesion's
    centroid by exp(u), u uniform in +-prior_zoom, so the prior's size is not the answer and
    the follow-up's size has to come from the follow-up image (0: off)."""
    change_weight: float = Field(default=0.0, ge=0)
    """Training: a tracking pair is drawn with weight 1 + change_weight * |log volume ratio|
    (follow-up to baseline), so lesions that shrank, vanished or grew are seen more often
    than their share (0: uniform)."""
    track_pairs: Literal["baseline", "all"] = "baseline"
    """Training: tracking samples pair the baseline with each follow-up (``baseline``), or
    every ordered pair of a patient's timepoints, time reversed included (``all``): the prior
    is then the earlier or the later scan's lesion, so shrinking and growing are seen equally
    often and each patient gives several times as many pairs."""
    detect_target: Literal["all", "new"] = "all"
    """Training of the detector: it segments every lesion in its window (``all``), or only the
    lesions its context scan lacks (``new``): the context is another timepoint of the patient,
    earlier or later (time reversed: a lesion that vanished is a new lesion seen backwards),
    so lesions present in both scans are negatives and new ones are many."""
    detect_insert: float = Field(default=0.0, ge=0, le=1)
    """Training of the detector: share of its windows into whose follow-up channel a lesion of
    the same patient (any timepoint, shrunk by up to 0.4 in diameter) is pasted at a spot of
    the tissue it was cut from, as a new lesion the context scan lacks (target: the pasted
    lesion, with ``detect_target: new`` the real new ones too). Real new lesions are few
    (about one window in ten); pasted ones give the detector as many as it needs (0: off)."""
    jitter_mm: float = Field(default=2.0, ge=0)
    """SD of the simulated registration error between baseline and follow-up crops."""
    intensity: Literal["cache", "local"] = "cache"
    """Image channels: ``cache`` (the cache's values as they are) or ``local`` (each crop minus
    its soft-tissue median, over ``intensity_scale_hu``; :mod:`medseq.tracker.intensity`;
    measured no better, docs/track.md)."""
    intensity_scale_hu: float = Field(default=25.0, gt=0)
    intensity_clip: float = Field(default=6.0, gt=0)
    steps: int = Field(default=4000, ge=1)
    steps_per_epoch: int = Field(default=50, ge=1)
    batch_size: int = Field(default=8, ge=1)
    lr: float = Field(default=1e-2, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    dice: Literal["crop", "batch"] = "crop"
    """Dice term of the loss per crop (every lesion, a shrunken or vanished one included,
    weighs the same; an empty target asks for an empty output) or over the whole batch (large
    lesions dominate; the default before card format 2)."""
    dice_smooth: float = Field(default=1e-5, gt=0)
    """Smoothing added to the Dice term's numerator and denominator. At 1e-5 (MONAI's default)
    a crop whose target is empty (a vanished lesion, a window without lesions) scores about
    the same whatever the output, so only the cross-entropy, averaged over the whole crop,
    opposes a spurious blob; at 1 such a blob of v voxels costs v / (v + 1)."""
    volume_weight: float = Field(default=0.0, ge=0)
    """Weight of a volume term added to the tracker's loss: per crop, |log((V_p + 1) / (V_y + 1))|
    with V_p the summed output probability above 0.05 and V_y the target's voxels. The Dice and
    cross-entropy terms hardly price a lesion drawn at its prior's size where it shrank or
    vanished; this term prices the relative size error of every lesion alike, a blob where
    nothing is included (0: off; the detector's loss is unchanged)."""
    volume_empty: bool = True
    """With ``volume_weight``: crops whose target is empty (a vanished lesion) count in the
    volume term too (False: only crops with a lesion to draw, so the term sizes lesions that
    are there and does not push toward empty outputs)."""
    mix: tuple[float, float, float] = (0.5, 0.2, 0.3)
    """Shares of tracking pairs, prompt-only (baseline annotation) and unprompted (detection)
    samples."""
    val_fraction: float = Field(default=0.15, ge=0, lt=1)
    """Share of patients held out to pick the detection threshold and report validation Dice."""
    threshold: float = Field(default=0.5, gt=0, lt=1)
    """Probability above which a voxel is lesion."""
    vanish_max_probability: float = Field(default=0.05, gt=0, lt=1)
    """No voxel of a tracked lesion's crop above this: the lesion is gone (measured 0 mm);
    an empty output with a higher maximum is "not found"."""
    search_mm: float = Field(default=20.0, gt=0)
    """The kept component must lie within this distance of the propagated point."""
    detect_max_fp_per_scan: float = Field(default=0.3, ge=0)
    """The detection threshold is the lowest score with at most this many false positives per
    scan on the held-out training patients."""
    min_new_voxels: int = Field(default=2, ge=1)
    detector: Literal["subtraction", "separate", "shared"] = "subtraction"
    """New-lesion detection by subtracting the registered baseline from the follow-up
    (``subtraction``, the default: no network, :mod:`medseq.tracker.subtraction`, CT only), by
    a second network of the same shape over [follow-up, baseline] channels, trained beside the
    tracker on detection samples only (``separate``), or by the tracker itself without a
    prompt (``shared``, trackers before card format 2; measured: the shared network learns to
    follow the prompt and detects nothing, docs/track.md). Without a shared detector the
    tracker's batches hold only the track and self shares of ``mix``."""
    subtract_max_fp_per_scan: float = Field(default=0.02, ge=0)
    """``detector: subtraction``: the threshold is the lowest score with at most this many
    false positives per follow-up on all training patients (their true follow-up lesions
    explain what changed); each false positive makes a follow-up PD, hence the low default."""
    track_prior: Literal["baseline", "point"] = "baseline"
    """Inference: a follow-up lesion is segmented with the baseline crop and the baseline
    lesion's mask as its prior (``baseline``), or from the propagated point alone, the
    follow-up crop as its own prior and no mask (``point``, the *self* samples' inputs): the
    lesion's size then comes from the follow-up image only."""
    prior_refine: Literal["none", "scale"] = "scale"
    """The prior (baseline crop and mask) of a tracked lesion is carried to the follow-up by
    the rigid registration and then scaled about the propagated point as a local scale
    registration fits it (``scale``, the default since card format 3,
    :mod:`medseq.tracker.refine`), in training and at inference: the lesion's growth or
    shrinkage reaches the network through its prior. ``none``: the rigid registration alone
    (trackers before card format 3)."""
    scale_prior_sd: float = Field(default=0.6, ge=0)
    """With ``prior_refine: scale``: SD of a normal prior on the fitted log diameter ratio,
    weighed against the fit's residuals by the follow-up's noise, so a lesion the follow-up
    barely shows keeps about its baseline size instead of the best of a nearly flat cost
    (0: plain least squares, as trackers whose card predates this option were trained)."""
    flip_average: bool = True
    """Inference: a tracked lesion's probabilities are the mean over the 8 flips of its crop
    (test-time augmentation; the network is trained with those flips). Not for the detector's
    sliding window, which would cost 8 times as much."""
    detect_context: bool = True
    """Detection sees the baseline scan too: its image, carried onto the follow-up's grid, in
    the baseline channel of every window (a new lesion is what the follow-up shows and the
    baseline does not). False: the follow-up alone (trackers before card format 2)."""
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    """``auto``: bf16 autocast on CUDA only; ``off``."""
    threads: int | None = None
    deterministic: bool = True

    @model_validator(mode="after")
    def _network_detector_settings(self) -> TrackerConfig:
        """Settings that only train a detection network are refused without one, rather than
        silently ignored."""
        if self.detector == "subtraction":
            if self.detect_insert > 0:
                raise ValueError("detect_insert trains a detection network: it needs "
                                 "detector: separate or shared")
            if self.detect_target != "all":
                raise ValueError("detect_target trains a detection network: it needs "
                                 "detector: separate or shared")
        return self


class TrackerCard(BaseModel):
    """``tracker.json``: what a trained tracker is and which caches it fits."""

    model_config = ConfigDict(extra="allow")

    format: int = 3
    """2: ``detect_context``, ``detector`` and ``dice`` exist (a format-1 card's tracker
    detects by itself without the baseline image, and was trained with the batch Dice);
    3: ``prior_refine`` exists (a format-2 card's tracker was trained on unscaled priors)."""
    medseq_version: str = __version__
    config: TrackerConfig
    preprocess_config: dict[str, Any] = Field(default_factory=dict)
    preprocess_config_hash: str | None = None
    spacing_mm: list[float] | None = None
    """The cache grid's spacing (the crops are cut at it)."""
    detect_threshold: float | None = 0.5
    """Score at or above which a detector proposal is a new lesion; None: the detector is off
    (no threshold met ``detect_max_fp_per_scan`` on the held-out patients)."""
    train_patients: list[str] = Field(default_factory=list)
    val_patients: list[str] = Field(default_factory=list)
    steps_done: int = 0
    metrics: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _older_cards(cls, data: Any) -> Any:
        """Settings a card predates take the values its tracker was trained with: a format-1
        network detects without the baseline image, a format-2 one reads unscaled priors, and
        one written before ``scale_prior_sd`` existed fits the scale without the prior."""
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            return data
        version = int(data.get("format", 1))
        older: dict[str, Any] = {}
        if version < 2:
            older.update(detect_context=False, detector="shared", dice="batch")
        if version < 3:
            older.update(prior_refine="none")
        if "scale_prior_sd" not in data["config"]:
            older.update(scale_prior_sd=0.0)  # cards written before the option: least squares
        return {**data, "config": {**older, **data["config"]}}
