"""Train one model: one cross-validation fold, or the final all-patient model.

AdamW with warm-up + cosine, class weighting, gradient-norm clipping, early stopping on the
validation set, bf16 autocast where enabled, DDP when launched by torchrun, and a checkpoint
after every epoch so ``--resume`` continues exactly where a killed run stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional
from torch.utils.data import DataLoader, DistributedSampler

from medseq.contracts.cache import PatientRecord
from medseq.contracts.run import ModelInputs
from medseq.models.sequence import ResponseModel, SequenceOutput
from medseq.training import checkpoint as ckpt
from medseq.training.config import TrainConfig
from medseq.training.dataset import Batch, CacheDataset, collate
from medseq.training.distributed import DistInfo, barrier, mean_across
from medseq.training.losses import cox_loss, focal_loss


class InjectedStopError(RuntimeError):
    """Raised after a chosen epoch to simulate a killed run (tests of ``--resume``)."""


@dataclass(frozen=True)
class FoldSpec:
    """What one model trains on."""

    name: str
    """``"0"``, ``"1"``, ... for folds, ``"all"`` for the final model."""
    stream: int
    """Seeds this fold's initialisation, sampling and augmentation."""
    train: list[str]
    val: list[str]
    test: list[str]
    epochs: int
    early_stopping: bool


@dataclass
class FoldResult:
    """What training one model produced."""

    name: str
    best_epoch: int
    """1-based epoch whose weights were kept."""
    epochs_run: int
    history: list[dict[str, Any]]
    predictions: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Patient id -> probability (+ class probabilities), forecast per observed state."""
    state: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Context:
    """What every fold shares."""

    config: TrainConfig
    cache_dir: Path
    run_dir: Path
    records: dict[str, PatientRecord]
    labels: dict[str, int]
    device: torch.device
    dist: DistInfo
    on_epoch: Callable[[FoldSpec, dict[str, Any]], None]
    inputs: ModelInputs = field(default_factory=ModelInputs)
    """What the model is fed (the ``inputs`` of the model cards the run writes)."""
    times: dict[str, float] = field(default_factory=dict)
    """Progression labels: days to progression or censoring (``labels`` holds the event)."""
    new_lesions: dict[str, list[bool]] = field(default_factory=dict)
    """Per patient and scan: did tracking find a new lesion (a scan measurement)."""
    stop_after_epochs: int | None = None
    """Total epochs (over all folds) after which to raise :class:`InjectedStopError`."""
    epochs_done: int = 0


def fit(spec: FoldSpec, ctx: Context) -> FoldResult:
    """Train ``spec`` (resuming its checkpoint when there is one) and predict its test set."""
    config = ctx.config
    torch.manual_seed(_seed(config.seed, spec.stream, -1))
    model = ResponseModel(config.model)
    with torch.no_grad():
        # Start the forecast at the cohort's typical burden, so its loss does not swamp the
        # response loss in the first epochs.
        model.forecast_head.bias.fill_(_mean_log_burden([ctx.records[p] for p in spec.train]))
    model = model.to(ctx.device)
    if config.channels_last:
        model.use_channels_last()
    module: nn.Module = model
    if ctx.dist.enabled:
        module = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )
    train_set = _dataset(ctx, spec.train, augment=True, stream=spec.stream)
    val_set = _dataset(ctx, spec.val) if spec.val else None
    sampler: DistributedSampler[dict[str, Any]] = DistributedSampler(
        train_set, num_replicas=ctx.dist.world, rank=ctx.dist.rank, shuffle=True,
        seed=_seed(config.seed, spec.stream, -2) % 2**31,
    )
    loader = DataLoader(
        train_set, batch_size=config.batch_size, sampler=sampler, collate_fn=collate,
        num_workers=config.workers, persistent_workers=False,
        pin_memory=ctx.device.type == "cuda",
    )
    steps_per_epoch = max(1, len(loader))
    epochs = fold_epochs(spec, config, ctx.dist.world)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.optimiser.lr, weight_decay=config.optimiser.weight_decay,
        betas=config.optimiser.betas,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, _schedule(config, epochs * steps_per_epoch, steps_per_epoch)
    )
    weights = _class_weights(config, [ctx.labels[p] for p in spec.train], ctx.device)

    start = 0
    best_state: dict[str, torch.Tensor] | None = None
    best_metric = math.inf
    best_epoch = 0
    bad_epochs = 0
    history: list[dict[str, Any]] = []
    restored = ckpt.load_checkpoint(ctx.run_dir)
    if restored is not None and restored[0].get("fold") == spec.name:
        info, tensors = restored
        model.load_state_dict(ckpt.prefixed(tensors, "model"))
        if info.get("has_best"):
            best_state = ckpt.prefixed(tensors, "best")
        ckpt.restore_optimiser(optimiser, info, tensors, ctx.device)
        scheduler.load_state_dict(info["scheduler"])
        start = int(info["epoch"])
        best_metric = float(info["best_metric"])
        best_epoch = int(info["best_epoch"])
        bad_epochs = int(info["bad_epochs"])
        history = list(info["history"])

    epoch = start
    for epoch in range(start, epochs):
        if spec.early_stopping and bad_epochs >= config.early_stopping.patience:
            break
        began = time.perf_counter()
        torch.manual_seed(_seed(config.seed, spec.stream, epoch, ctx.dist.rank))
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        train_loss, n_seen = _train_epoch(module, loader, optimiser, scheduler, weights, ctx)
        train_loss = mean_across(ctx.dist, train_loss, n_seen, ctx.device)
        row: dict[str, Any] = {
            "fold": spec.name, "epoch": epoch + 1, "train_loss": round(train_loss, 6),
            "lr": scheduler.get_last_lr()[0],
        }
        improved = True
        if val_set is not None:
            evaluation = evaluate(model, val_set, weights, ctx)
            row.update(val_loss=round(evaluation.loss, 6), val_auc=evaluation.auc,
                       val_response_loss=round(evaluation.response_loss, 6))
            metric = _monitored(config, evaluation)
            improved = metric < best_metric
            if improved:
                best_metric = metric
        if improved or not spec.early_stopping:
            best_epoch = epoch + 1
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            bad_epochs = 0
        else:
            bad_epochs += 1
        row["seconds"] = round(time.perf_counter() - began, 3)
        history.append(row)
        if ctx.dist.is_main:
            ckpt.save_checkpoint(
                ctx.run_dir, model_state=model.state_dict(),
                best_state=best_state if spec.early_stopping else None,
                optimiser=optimiser, scheduler=scheduler,
                info={"fold": spec.name, "epoch": epoch + 1, "best_metric": _finite(best_metric),
                      "best_epoch": best_epoch, "bad_epochs": bad_epochs, "history": history,
                      "rng": "re-seeded from (seed, fold, epoch) at every epoch"},
            )
        barrier(ctx.dist)
        ctx.on_epoch(spec, row)
        ctx.epochs_done += 1
        if ctx.stop_after_epochs is not None and ctx.epochs_done >= ctx.stop_after_epochs:
            raise InjectedStopError(f"stopped after {ctx.epochs_done} epochs")
    if spec.early_stopping and best_state is not None:
        model.load_state_dict(best_state)
    result = FoldResult(
        name=spec.name, best_epoch=best_epoch, epochs_run=len(history), history=history,
        state={k: v.detach().cpu() for k, v in model.state_dict().items()},
    )
    if spec.test:
        result.predictions = evaluate(model, _dataset(ctx, spec.test), weights, ctx).predictions
    return result


def fold_epochs(spec: FoldSpec, config: TrainConfig, world: int = 1) -> int:
    """Epochs ``spec`` trains for: with ``steps`` (folds only) as many as the steps take at
    this fold's batches per epoch, so a small cohort is not under-trained; else its epochs."""
    if config.steps is None or not spec.early_stopping:
        return spec.epochs
    per_rank = math.ceil(len(spec.train) / max(world, 1))
    steps_per_epoch = max(1, math.ceil(per_rank / config.batch_size))
    return max(1, math.ceil(config.steps / steps_per_epoch))


@dataclass
class Evaluation:
    """Loss, AUC and per-patient predictions on a set of patients."""

    loss: float
    auc: float | None
    predictions: dict[str, dict[str, Any]]
    response_loss: float = math.nan
    """The response objective alone (what early stopping watches by default)."""


@torch.no_grad()
def evaluate(
    model: ResponseModel, dataset: CacheDataset, weights: torch.Tensor | None, ctx: Context
) -> Evaluation:
    """Predict every patient of ``dataset`` (the whole set on every rank: it is small)."""
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=ctx.config.batch_size, shuffle=False,
                        collate_fn=collate, num_workers=0)
    total, response_total, count = 0.0, 0.0, 0
    predictions: dict[str, dict[str, Any]] = {}
    logits_all: list[torch.Tensor] = []
    batches: list[Batch] = []
    for batch in loader:
        batch = _to(batch, ctx.device)
        with _autocast(ctx):
            out = _forward(model, batch)
            response, forecast_loss = loss_terms(out, batch, weights, ctx.config)
        n = int(batch["label"].shape[0])
        total += float(response + ctx.config.forecast_weight * forecast_loss) * n
        response_total += float(response) * n
        count += n
        logits_all.append(out.logits.float())
        batches.append(batch)
        probabilities = _probabilities(out.logits.float(), ctx.config.model.task)
        forecast = torch.expm1(out.forecast.float()).clamp_min(0.0)
        for row, index in enumerate(batch["index"].tolist()):
            record = dataset.records[index]
            k = int(batch["lengths"][row])
            entry: dict[str, Any] = {
                "probability": float(probabilities[row, 0]),
                "observed": k,
                "forecast_ml": [round(float(v), 4) for v in forecast[row, :k]],
            }
            if probabilities.shape[1] > 1:
                entry["probabilities"] = [float(p) for p in probabilities[row, 1:]]
            if is_progression(ctx.config):
                entry["risk"] = round(float(out.logits[row, 0]), 6)
            classical = dataset.classical(index)
            if classical is not None:
                entry["features"] = {k: round(float(v), 6) for k, v in classical.items()}
            predictions[record.patient_id] = entry
    model.train(was_training)
    if is_progression(ctx.config) and logits_all:
        # The Cox loss compares patients with each other: over the whole set, not per batch.
        joined = {key: torch.cat([b[key] for b in batches]) for key in ("label", "time")}
        response_total = float(cox_loss(torch.cat(logits_all)[:, 0], joined["time"],
                                        joined["label"] > 0)) * max(count, 1)
    labels = [_responder(ctx.labels[p], ctx.config.model.task) for p in predictions]
    scores = [predictions[p]["probability"] for p in predictions]
    return Evaluation(loss=total / max(count, 1), auc=roc_auc(labels, scores),
                      predictions=predictions, response_loss=response_total / max(count, 1))


def compute_loss(
    out: SequenceOutput, batch: Batch, weights: torch.Tensor | None, config: TrainConfig
) -> torch.Tensor:
    """Response loss (class-weighted) + ``forecast_weight`` x masked MSE of log1p burden."""
    response, forecast = loss_terms(out, batch, weights, config)
    return response + config.forecast_weight * forecast


def loss_terms(
    out: SequenceOutput, batch: Batch, weights: torch.Tensor | None, config: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """(response loss, forecast loss): the response objective of ``config.loss`` and the
    masked MSE of the next scan's log1p burden."""
    logits = out.logits.float()
    labels = batch["label"]
    kind = loss_kind(config)
    if kind == "cox":
        response = cox_loss(logits[:, 0], batch["time"], labels > 0)
    elif kind == "ce":
        response = functional.cross_entropy(logits, labels, weight=weights)
    else:
        target = labels.float()
        pos_weight = weights[1] / weights[0] if weights is not None else None
        if kind == "bce":
            response = functional.binary_cross_entropy_with_logits(
                logits[:, 0], target, pos_weight=pos_weight)
        elif kind == "focal":
            response = focal_loss(logits[:, 0], target, gamma=config.focal_gamma,
                                  pos_weight=pos_weight)
        else:  # mse on the sigmoid output, class-weighted like the others
            error = (torch.sigmoid(logits[:, 0]) - target) ** 2
            if weights is not None:
                error = error * weights[labels.clamp(0, 1)]
            response = error.mean()
    mask = batch["forecast_mask"].float()
    error = (out.forecast.float() - batch["forecast_target"]) ** 2 * mask
    forecast = error.sum() / mask.sum().clamp_min(1.0)
    return response, forecast


def loss_kind(config: TrainConfig) -> str:
    """The response loss ``config`` trains with: ``auto`` is cox for progression labels, ce
    for the RECIST task, bce otherwise."""
    if is_progression(config):
        return "cox"
    if config.loss != "auto":
        return config.loss
    return "ce" if config.model.task == "recist" else "bce"


def is_progression(config: TrainConfig) -> bool:
    """Whether ``config`` trains on time to progression (a risk score, not a probability)."""
    return config.label.kind == "progression"


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """Validation AUC (:func:`medseq.evaluation.metrics.roc_auc`, 6 decimals); None without
    both classes or with a non-finite score (a diverged model)."""
    from medseq.evaluation import metrics

    if not metrics.has_both_classes(labels) or not all(math.isfinite(s) for s in scores):
        return None
    return round(metrics.roc_auc(labels, scores), 6)


def _train_epoch(
    module: nn.Module, loader: DataLoader[Any], optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler, weights: torch.Tensor | None, ctx: Context,
) -> tuple[float, int]:
    module.train()
    total, count = 0.0, 0
    clip = ctx.config.optimiser.clip_grad_norm
    for batch in loader:
        batch = _to(batch, ctx.device)
        optimiser.zero_grad(set_to_none=True)
        with _autocast(ctx):
            out = _forward(module, batch)
            loss = compute_loss(out, batch, weights, ctx.config)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        optimiser.step()
        scheduler.step()
        n = int(batch["label"].shape[0])
        total += float(loss.detach()) * n
        count += n
    return total / max(count, 1), count


def _forward(module: nn.Module, batch: Batch) -> SequenceOutput:
    out: SequenceOutput = module(
        batch["crops"], batch["lesion_mask"], batch["lengths"], batch["days"],
        batch["days_since_previous"], batch["lesion_features"], batch["scan_features"],
    )
    return out


def _dataset(ctx: Context, patients: list[str], *, augment: bool = False,
             stream: int = 0) -> CacheDataset:
    return CacheDataset(
        ctx.cache_dir, [ctx.records[p] for p in patients], ctx.labels,
        inputs=ctx.inputs, augment=ctx.config.augment if augment else None,
        seed=ctx.config.seed, stream=stream, times=ctx.times, new_lesions=ctx.new_lesions,
    )


def _to(batch: Batch, device: torch.device) -> Batch:
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _autocast(ctx: Context) -> torch.autocast:
    amp = ctx.config.amp
    enabled = amp == "bf16" or (amp == "auto" and ctx.device.type == "cuda")
    return torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16, enabled=enabled)


def _probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """[B, 1] responder probability (binary) or [B, 1 + classes] (responder, then classes)."""
    if task == "binary":
        return torch.sigmoid(logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.cat((probs[:, :2].sum(dim=-1, keepdim=True), probs), dim=-1)


def _responder(label: int, task: str) -> int:
    return label if task == "binary" else int(label in (0, 1))


def _class_weights(config: TrainConfig, labels: list[int], device: torch.device
                   ) -> torch.Tensor | None:
    if not config.class_weighting:
        return None
    n_classes = 2 if config.model.task == "binary" else config.model.n_outputs
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(float)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32, device=device)


def _schedule(config: TrainConfig, total_steps: int, steps_per_epoch: int
              ) -> Callable[[int], float]:
    warmup = round(config.schedule.warmup_epochs * steps_per_epoch)
    floor = config.schedule.min_lr_ratio
    kind = config.schedule.kind

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _monitored(config: TrainConfig, evaluation: Evaluation) -> float:
    monitor = config.early_stopping.monitor
    if monitor == "val_auc" and evaluation.auc is not None and not is_progression(config):
        return -evaluation.auc
    if monitor == "val_loss":
        return evaluation.loss
    return evaluation.response_loss


def _mean_log_burden(records: Sequence[PatientRecord]) -> float:
    values = [math.log1p(max(tp.lesion_volume_ml, 0.0)) for r in records for tp in r.timepoints[1:]
              if tp.lesion_volume_ml is not None]
    return float(np.mean(values)) if values else 0.0


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 1e30


def _seed(seed: int, stream: int, epoch: int, rank: int = 0) -> int:
    """A 63-bit seed derived from (seed, stream, epoch, rank)."""
    sequence = np.random.SeedSequence([seed, stream, epoch + 10, rank])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
