"""``medseq train-tracker``: train the promptable segmenter on a cache with masks.

Patient-level split (``val_fraction`` held out, seeded); a fixed number of optimiser steps on
batches mixing tracking, prompt-only and unprompted samples (:mod:`medseq.tracker.pairs`);
AdamW with cosine decay; Dice + cross-entropy (and an optional volume term). Every epoch
re-seeds numpy and torch from (seed, epoch) and ends with a checkpoint (safetensors + JSON,
:mod:`medseq.training.checkpoint`), so ``--resume`` repeats exactly what an unbroken run does.
On the held-out patients it measures the follow-up Dice and chooses the detection threshold;
the result is ``tracker.safetensors`` + ``tracker.json`` (never a pickle).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from medseq.contracts.cache import read_manifest
from medseq.errors import InputDataError, UsageError
from medseq.io.atomic import write_text_atomic
from medseq.tracker.config import TrackerCard, TrackerConfig
from medseq.tracker.intensity import standardise_inputs
from medseq.tracker.pairs import PatientData, items, load_patient, normaliser, sample

CONFIG_NAME = "tracker_config.json"
VOLUME_FLOOR: float = TrackerConfig.model_fields["vanish_max_probability"].default
"""Probabilities at or below this do not count in the volume term: the vanished-lesion level
of :class:`TrackerConfig`'s default ``vanish_max_probability``."""


@dataclass(frozen=True)
class TrainSummary:
    patients: int
    val_patients: int
    steps: int
    val_dice: float | None
    detect_threshold: float | None
    seconds: float


def train_tracker(cache_dir: Path, run_dir: Path, config: TrackerConfig, *, resume: bool = False,
                  log: Callable[[str], None] | None = None) -> TrainSummary:
    """Train (or resume) a tracker run; see the module docstring.

    Raises:
        UsageError: ``run_dir`` already holds a run (without ``resume``) or nothing to resume.
        InputDataError: fewer than two patients whose every timepoint has a mask.
    """
    import time

    import torch

    from medseq.tracker.network import DETECTOR_CHANNELS, build_detector, build_network
    from medseq.tracker.segment import Tracker, save_tracker
    from medseq.training.checkpoint import (
        clear_checkpoint,
        load_checkpoint,
        prefixed,
        restore_optimiser,
        save_checkpoint,
    )
    from medseq.training.run import resolve_device

    started = time.monotonic()
    say = log or (lambda _: None)
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / CONFIG_NAME).is_file():
            raise UsageError(f"nothing to resume: no {CONFIG_NAME}", path=run_dir)
        saved = TrackerConfig.model_validate_json((run_dir / CONFIG_NAME).read_text("utf-8"))
        config = saved.model_copy(update={"device": config.device})
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise UsageError("the run folder is not empty (give a new one, or --resume)",
                         path=run_dir)
    manifest = read_manifest(cache_dir)
    if config.crop_size % 2 ** (len(config.widths) - 1):
        raise UsageError(f"crop_size {config.crop_size} must be a multiple of "
                         f"{2 ** (len(config.widths) - 1)} for {len(config.widths)} levels")
    _determinism(config)
    device = resolve_device(config.device)
    pp = normaliser(manifest.config)
    patients = [d for r in manifest.ok_patients()
                if (d := load_patient(cache_dir, r, pp)) is not None]
    for d in patients:
        if d.levels is not None:
            d.levels = replace(d.levels, prior_sd=config.scale_prior_sd)
    if len(patients) < 2:
        raise InputDataError("train-tracker needs at least 2 patients whose every timepoint "
                             "has a lesion mask", path=cache_dir)
    order = np.random.default_rng(config.seed).permutation(len(patients))
    n_val = min(len(patients) - 1, round(config.val_fraction * len(patients)))
    val = sorted((patients[i] for i in order[:n_val]), key=lambda d: d.patient_id)
    train = sorted((patients[i] for i in order[n_val:]), key=lambda d: d.patient_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / CONFIG_NAME, config.model_dump_json(indent=2) + "\n")
    say(f"{len(train)} training and {len(val)} held-out patients; {config.steps} steps")

    torch.manual_seed(config.seed)
    network = build_network(config).to(device)
    separate = config.detector == "separate"
    shared = config.detector == "shared"
    detector = build_detector(config).to(device) if separate else None
    # One module and one optimiser over both networks: checkpoints and resume stay as they are.
    modules = torch.nn.ModuleDict({"tracker": network, **({"detector": detector}
                                                          if detector is not None else {})})
    optimiser = torch.optim.AdamW(modules.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, config.steps)
                                                    / config.steps)) * 0.95 + 0.05)
    epochs = math.ceil(config.steps / config.steps_per_epoch)
    start_epoch = 0
    history: list[float] = []
    checkpoint = load_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        info, tensors = checkpoint
        modules.load_state_dict(prefixed(tensors, "model"))
        restore_optimiser(optimiser, info, tensors, device)
        scheduler.load_state_dict(info["scheduler"])
        start_epoch, history = int(info["epoch"]), list(info["losses"])
        say(f"resuming after epoch {start_epoch}")
    pools = items(train, config.track_pairs)
    tracker_kinds = ("track", "self", "detect") if shared else ("track", "self")
    loss_fn = _loss(config)
    tracker_loss = _tracker_loss(config)
    amp = device.type == "cuda" and config.amp == "auto"
    for epoch in range(start_epoch, epochs):
        rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed * 100_003 + epoch)
        modules.train()
        steps = min(config.steps_per_epoch, config.steps - epoch * config.steps_per_epoch)
        total = 0.0
        for _ in range(steps):
            x, y = _batch(train, pools, config, rng, kinds=tracker_kinds)
            x = standardise_inputs(x, config, manifest.config)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = network(torch.from_numpy(x).to(device))
            loss = tracker_loss(logits.float(), torch.from_numpy(y).to(device))
            if detector is not None:
                xd, yd = _batch(train, pools, config, rng, kinds=("detect",))
                xd = standardise_inputs(xd, config, manifest.config)[:, list(DETECTOR_CHANNELS)]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    detected = detector(torch.from_numpy(np.ascontiguousarray(xd)).to(device))
                loss = loss + loss_fn(detected.float(), torch.from_numpy(yd).to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(modules.parameters(), 1.0)
            optimiser.step()
            scheduler.step()
            total += float(loss.detach())
        history.append(total / max(steps, 1))
        save_checkpoint(run_dir, model_state=modules.state_dict(), best_state=None,
                        optimiser=optimiser, scheduler=scheduler,
                        info={"epoch": epoch + 1, "losses": history})
        say(f"epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f}")
    card = TrackerCard(config=config, preprocess_config=manifest.config,
                       preprocess_config_hash=manifest.config_hash,
                       spacing_mm=[float(s) for s in patients[0].spacing],
                       train_patients=[d.patient_id for d in train],
                       val_patients=[d.patient_id for d in val],
                       steps_done=config.steps, metrics={"train_loss": history})
    modules.eval()
    tracker = Tracker(card, network, device, detector)
    held_out = val or train
    metrics, threshold = evaluate_held_out(tracker, held_out, config,
                                           detect=config.detector != "subtraction")
    if config.detector == "subtraction":
        found, threshold = subtraction_threshold(patients, config, manifest.config)
        metrics.update(found)
        shown = "none" if threshold is None else f"{threshold:.2f}"
        say(f"subtraction detector: threshold {shown}, {found['detect_true_kept']} "
            f"of {found['detect_new_lesions']} training new lesions at or above it, "
            f"{found['detect_fp_per_scan']:.3f} false positives per follow-up")
    card.detect_threshold = threshold
    card.metrics.update(metrics)
    if threshold is None and config.detector == "subtraction":
        say("detector off: the subtraction found no candidate on the training follow-ups; "
            "new lesions will not be reported")
    elif threshold is None:
        say(f"detector off: {metrics['detect_candidates']} proposals on the held-out scans "
            f"({metrics['detect_true_candidates']} true), no score threshold keeps false "
            f"positives within {config.detect_max_fp_per_scan} per scan and a true new lesion; "
            "new lesions will not be reported")
    save_tracker(run_dir, network.state_dict(), card,
                 detector.state_dict() if detector is not None else None)
    write_text_atomic(run_dir / "metrics.json", json.dumps(card.metrics, indent=1) + "\n")
    clear_checkpoint(run_dir)
    dice = metrics.get("val_median_dice")
    return TrainSummary(len(train), len(val), config.steps, dice, threshold,
                        time.monotonic() - started)


def evaluate_held_out(tracker: Any, patients: Sequence[PatientData], config: TrackerConfig,
                      *, detect: bool = True) -> tuple[dict[str, Any], float | None]:
    """Median follow-up Dice and the network detector's threshold (None: detector off, or not
    ``detect``) on held-out patients."""
    from medseq.tracker.detect import choose_threshold, detect_new
    from medseq.tracker.segment import track_lesions
    from medseq.tracker.views import warp_labels

    dices: list[float] = []
    scored: list[tuple[float, bool]] = []
    scans = truths = 0
    for data in patients:
        base = data.timepoints[0]
        lesions = [base.components == i for i in range(1, len(base.voxels) + 1)]
        for t in range(1, len(data.timepoints)):
            tp = data.timepoints[t]
            outcomes = track_lesions(tracker, tp.image.astype(np.float32),
                                     base.image.astype(np.float32), lesions, tp.spacing,
                                     tp.to_view)
            for i, outcome in enumerate(outcomes, start=1):
                truth = np.isin(tp.components, data.links[t][i]) & (tp.components > 0)
                if truth.any():
                    dices.append(dice(outcome.mask, truth))
            scans += 1
            truths += len(data.new[t])
            if not detect:
                continue
            tracked = [o.mask for o in outcomes if o.mask is not None]
            carried = [warp_labels(m, tp.to_view, tp.image.shape) for m in lesions]
            candidates = detect_new(tracker, tp.image.astype(np.float32), tp.body,
                                    tp.spacing, tracked=tracked, baseline=carried,
                                    baseline_image=base.image.astype(np.float32),
                                    to_view=tp.to_view)
            new = np.isin(tp.components, data.new[t]) & (tp.components > 0)
            scored += [(c.score, bool((c.mask & new).any())) for c in candidates]
    threshold = (choose_threshold(scored, scans, config.detect_max_fp_per_scan) if detect
                 else None)
    metrics = {"val_median_dice": float(np.median(dices)) if dices else None,
               "val_lesions": len(dices), "val_scans": scans, "val_new_lesions": truths,
               "detect_threshold": threshold, "detect_candidates": len(scored),
               "detect_true_candidates": sum(true for _, true in scored)}
    return metrics, threshold


def subtraction_threshold(patients: Sequence[PatientData], config: TrackerConfig,
                          preprocess_config: dict[str, Any]
                          ) -> tuple[dict[str, Any], float | None]:
    """The subtraction detector's threshold on every training follow-up
    (:func:`subtraction_scores`, :func:`choose_subtraction_threshold`) and what it keeps."""
    from medseq.tracker.detect import choose_subtraction_threshold

    scored, scans, truths = subtraction_scores(patients, preprocess_config,
                                               config.min_new_voxels)
    threshold = choose_subtraction_threshold(scored, scans, config.subtract_max_fp_per_scan)
    kept = [true for s, true in scored if threshold is not None and s >= threshold]
    return ({"detect_scans": scans, "detect_new_lesions": truths,
             "detect_candidates": len(scored),
             "detect_true_candidates": sum(true for _, true in scored),
             "detect_true_kept": sum(kept),
             "detect_fp_per_scan": (len(kept) - sum(kept)) / max(scans, 1),
             "detect_threshold": threshold}, threshold)


def subtraction_scores(patients: Sequence[PatientData], preprocess_config: dict[str, Any],
                       min_voxels: int = 2) -> tuple[list[tuple[float, bool]], int, int]:
    """(score, is a true new lesion) of every subtraction candidate on the patients'
    follow-ups, the number of follow-ups and of true new lesions. Each follow-up's true
    lesions linked to a baseline lesion explain what changed."""
    from medseq.tracker.detect import detect_by_subtraction
    from medseq.tracker.views import warp_labels

    scored: list[tuple[float, bool]] = []
    scans = truths = 0
    for data in patients:
        base = data.timepoints[0]
        lesions = [base.components == i for i in range(1, len(base.voxels) + 1)]
        for t in range(1, len(data.timepoints)):
            tp = data.timepoints[t]
            linked = [j for parts in data.links[t].values() for j in parts]
            tracked = [np.isin(tp.components, linked) & (tp.components > 0)]
            carried = [warp_labels(m, tp.to_view, tp.image.shape) for m in lesions]
            candidates = detect_by_subtraction(
                tp.image.astype(np.float32), tp.body, tp.spacing, tracked=tracked,
                baseline=carried, baseline_image=base.image, to_view=tp.to_view,
                preprocess_config=preprocess_config, min_voxels=min_voxels)
            new = np.isin(tp.components, data.new[t]) & (tp.components > 0)
            scored += [(c.score, bool((c.mask & new).any())) for c in candidates]
            scans += 1
            truths += len(data.new[t])
    return scored, scans, truths


def dice(mask: np.ndarray | None, truth: np.ndarray) -> float:
    if mask is None:
        return 0.0
    total = int(mask.sum()) + int(truth.sum())
    return 2.0 * int((mask & truth).sum()) / total if total else 1.0


def _batch(train: Sequence[PatientData], pools: dict[str, list[Any]], config: TrackerConfig,
           rng: np.random.Generator, *, kinds: Sequence[str] = ("track", "self", "detect")
           ) -> tuple[np.ndarray, np.ndarray]:
    """A batch of samples of ``kinds``, drawn in the proportions of ``mix``."""
    names = ("track", "self", "detect")
    kinds = [k for k in kinds if pools[k]]
    weights = np.array([config.mix[names.index(k)] for k in kinds], dtype=np.float64)
    if not weights.sum():  # a kind drawn alone (the detector's batch) needs no share in mix
        weights = np.ones(len(kinds))
    odds = None
    if "track" in kinds and config.change_weight > 0:
        odds = 1.0 + config.change_weight * np.array([i.change for i in pools["track"]])
        odds /= odds.sum()
    xs, ys = [], []
    for _ in range(config.batch_size):
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        pool = pools[kind]
        if kind == "track" and odds is not None:
            item = pool[int(rng.choice(len(pool), p=odds))]
        else:
            item = pool[int(rng.integers(len(pool)))]
        x, y = sample(item, train[item.patient], config, rng)
        xs.append(x)
        ys.append(y)
    return np.stack(xs), np.stack(ys)


def _loss(config: TrackerConfig) -> Callable[[Any, Any], Any]:
    from monai.losses import DiceCELoss

    return DiceCELoss(sigmoid=True, batch=config.dice == "batch", smooth_nr=config.dice_smooth,
                      smooth_dr=config.dice_smooth)


def _tracker_loss(config: TrackerConfig) -> Callable[[Any, Any], Any]:
    """The tracker's loss: Dice + cross-entropy, plus ``volume_weight`` times the mean over
    crops of |log((V_p + 1) / (V_y + 1))| (V_p: summed probability of the voxels above
    ``VOLUME_FLOOR``, V_y: target voxels)."""
    base = _loss(config)
    if config.volume_weight <= 0:
        return base
    import torch

    weight = config.volume_weight

    def loss(logits: Any, target: Any) -> Any:
        dims = tuple(range(1, logits.ndim))
        probability = torch.sigmoid(logits)
        # the faint background of a whole crop (13 824 voxels at 1e-3 is 14 voxels) is the
        # cross-entropy's business; what is drawn is what a lesion could be measured from
        drawn = (probability * (probability > VOLUME_FLOOR).to(probability.dtype)).sum(dim=dims)
        true = target.sum(dim=dims)
        error = torch.log((drawn + 1.0) / (true + 1.0)).abs()
        counted = (true > 0) | config.volume_empty  # every crop, or those with a lesion
        volume = error[counted].sum() / max(int(counted.sum()), 1)
        return base(logits, target) + weight * volume

    return loss


def _determinism(config: TrackerConfig) -> None:
    from medseq.training.run import set_determinism

    set_determinism(threads=config.threads, deterministic=config.deterministic)
