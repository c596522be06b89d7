"""``medseq train`` as a library call: cross-validation, the final model, the run directory.

Layout of the run directory: ``docs/architecture.md``. Every file is written atomically, and
only by rank 0 under torchrun.
"""

from __future__ import annotations

import contextlib
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseq.config import config_hash, dump_yaml
from medseq.contracts.cache import CacheManifest, read_manifest
from medseq.contracts.run import (
    EpochRow,
    FoldPrediction,
    FoldResultDocument,
    LabelRecord,
    ModelCard,
    ModelInputs,
    PredictionLine,
    Splits,
    append_metrics,
    read_fold_result,
    read_splits,
    write_fold_result,
    write_metrics,
    write_predictions,
    write_splits,
)
from medseq.errors import CacheError, InputDataError, UsageError
from medseq.io.atomic import write_text_atomic
from medseq.io.writer_lock import writer_lock
from medseq.models.io import save_model
from medseq.preprocess.pseudonym import copy_salt
from medseq.training import checkpoint as ckpt
from medseq.training.config import TrainConfig, model_inputs
from medseq.training.distributed import DistInfo, barrier, broadcast, init_from_env, shutdown
from medseq.training.labels import resolve_labels
from medseq.training.loop import Context, FoldResult, FoldSpec, fit, fold_epochs, roc_auc
from medseq.training.progress import Reporter
from medseq.training.splits import stratified_folds, stratified_holdout
from medseq.training.targets import EARLY_KINDS, LabelSpec

FINAL = "all"


@dataclass(frozen=True)
class RunSummary:
    """What a finished run reports."""

    run_dir: Path
    patients: int
    label_source: str
    excluded: str
    oof_auc: float | None
    best_epochs: list[int]
    final_epochs: int | None


def train_run(
    cache_dir: Path,
    run_dir: Path,
    config: TrainConfig,
    *,
    labels_csv: Path | None = None,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    progress: bool = True,
) -> RunSummary:
    """Cross-validate, then train the all-patient model; write everything to ``run_dir``.

    Args:
        cache_dir: a ``medseq preprocess`` cache.
        run_dir: the output folder; must not hold a run unless ``resume``.
        config: the resolved settings (on resume, those of ``run_dir/config.yaml``).
        labels_csv: ``patient_id,label`` file; default labels come from the manifest or tracking.
        resume: continue from ``run_dir``'s last checkpoint.
        stop_after_epochs: raise ``InjectedStopError`` after this many epochs (tests).
        progress: show progress on stderr.
    """
    cache_dir, run_dir = Path(cache_dir), Path(run_dir)
    device = resolve_device(config.device)
    dist = init_from_env(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    set_determinism(threads=config.threads, deterministic=config.deterministic)
    try:
        # One writer per run folder (rank 0 writes for all ranks): a second train or --resume
        # into it is refused while this one runs.
        with (writer_lock(run_dir, what="run folder") if dist.is_main
              else contextlib.nullcontext()):
            return _run(cache_dir, run_dir, config, device, dist, labels_csv, resume,
                        stop_after_epochs, progress)
    finally:
        shutdown(dist)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a usage error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available to torch")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _run(
    cache_dir: Path, run_dir: Path, config: TrainConfig, device: torch.device, dist: DistInfo,
    labels_csv: Path | None, resume: bool, stop_after_epochs: int | None, progress: bool,
) -> RunSummary:
    manifest = read_manifest(cache_dir)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    barrier(dist)
    reporter = Reporter(run_dir / "log.txt" if dist.is_main else None,
                        enabled=progress and dist.is_main)
    if resume:
        splits = read_splits(run_dir)
    else:
        if (run_dir / "config.yaml").exists():
            raise UsageError("already holds a training run; use --resume or another -o",
                             path=run_dir)
        splits = broadcast(dist, _new_splits(cache_dir, manifest, config, labels_csv)
                           if dist.is_main else None)
        if dist.is_main:
            write_text_atomic(run_dir / "config.yaml", dump_yaml(config))
            write_splits(run_dir, splits)
            copy_salt(cache_dir, run_dir)  # owner-only (0600), like the cache's
        barrier(dist)
    labels: dict[str, int] = dict(splits.labels)
    fold_of: dict[str, int] = dict(splits.folds)
    missing = [p for p in labels if p not in manifest.patients]
    if missing:
        raise CacheError(f"{len(missing)} patients of splits.json are not in the cache "
                         f"(first: {missing[0]})", path=cache_dir)
    records = {p: manifest.patients[p] for p in labels}
    first = records[next(iter(records))]
    inputs = model_inputs(config, _crop_shape(cache_dir, first), manifest.config,
                          first.modality)
    ctx = Context(
        config=config, cache_dir=cache_dir, run_dir=run_dir, records=records, labels=labels,
        device=device, dist=dist, on_epoch=lambda spec, row: None, inputs=inputs,
        stop_after_epochs=stop_after_epochs, times=dict(splits.times),
        new_lesions=_new_lesion_flags(cache_dir, list(records)) if inputs.scan_measurements
        else {},
    )
    with reporter:
        if not resume:
            reporter.message(
                f"training on {len(labels)} patients (labels from {splits.label_source}); "
                + (splits.excluded_summary or "none excluded")
                + f"; {config.folds}-fold cross-validation, device {device.type}"
                + (f", {dist.world} processes" if dist.enabled else "")
            )
        else:
            reporter.message(f"resuming {run_dir}")
        results = _completed_results(run_dir, config.folds)
        restored = ckpt.load_checkpoint(run_dir) if resume else None
        finished = len(results) == config.folds and (
            not config.final_model or (run_dir / "model.json").is_file()
        )
        if dist.is_main and not finished:
            _rewrite_metrics(run_dir, results, restored[0] if restored else None)

        def on_epoch(spec: FoldSpec, row: dict[str, Any]) -> None:
            reporter.epoch(_title(spec, config.folds), row)
            if dist.is_main:
                append_metrics(run_dir, EpochRow.model_validate(row))

        ctx.on_epoch = on_epoch
        for k in range(config.folds):
            if str(k) in results:
                continue
            test = sorted(p for p, f in fold_of.items() if f == k)
            rest = sorted(p for p, f in fold_of.items() if f != k)
            train, val = stratified_holdout(rest, labels, config.early_stopping.val_fraction,
                                            seed=config.seed * 1000 + k)
            spec = FoldSpec(name=str(k), stream=k, train=train, val=val, test=test,
                            epochs=config.epochs, early_stopping=True)
            reporter.start_model(_title(spec, config.folds), fold_epochs(spec, config, dist.world),
                                 validation=_class_counts(val, labels, config.model.task))
            result = fit(spec, ctx)
            if dist.is_main:
                _save_fold(run_dir, result, _card(config, manifest, inputs, train, k,
                                                  result.best_epoch, splits.label_kind))
                ckpt.clear_checkpoint(run_dir)
            barrier(dist)
            results[str(k)] = result
        oof = _write_predictions(run_dir, results, fold_of, labels, records, config, dist,
                                 dict(splits.times))
        best_epochs = [results[str(k)].best_epoch for k in range(config.folds)]
        reporter.message(
            "cross-validated AUC (out-of-fold): "
            + (f"{oof:.3f}" if oof is not None else "n/a (one class only)")
            + f"; best epochs {best_epochs}"
        )
        final_epochs: int | None = None
        if config.final_model:
            final_epochs = max(1, int(np.ceil(statistics.median(best_epochs))))
            if not (run_dir / "model.json").is_file():
                spec = FoldSpec(name=FINAL, stream=config.folds, train=sorted(labels), val=[],
                                test=[], epochs=final_epochs, early_stopping=False)
                reporter.start_model(_title(spec, config.folds), final_epochs)
                result = fit(spec, ctx)
                if dist.is_main:
                    save_model(run_dir, result.state, _card(config, manifest, inputs,
                                                            sorted(labels), None, final_epochs,
                                                            splits.label_kind))
                    ckpt.clear_checkpoint(run_dir)
                barrier(dist)
            reporter.message(f"final model: {final_epochs} epochs on all {len(labels)} patients")
    return RunSummary(
        run_dir=run_dir, patients=len(labels), label_source=splits.label_source,
        excluded=splits.excluded_summary, oof_auc=oof, best_epochs=best_epochs,
        final_epochs=final_epochs,
    )


def _new_splits(cache_dir: Path, manifest: CacheManifest, config: TrainConfig,
                labels_csv: Path | None) -> Splits:
    found = resolve_labels(cache_dir, manifest, task=config.model.task, labels_csv=labels_csv,
                           spec=_label_spec(config, labels_csv))
    if not found.labels:
        raise InputDataError(
            "no patient can be trained on: " + (found.exclusion_summary() or "the cache is empty"),
            path=cache_dir,
        )
    responders = [int(v in (1,) if config.model.task == "binary" else v in (0, 1))
                  for v in found.labels.values()]
    if len(set(responders)) < 2:
        names = (("progressed", "censored") if found.kind == "progression"
                 else ("responders", "non-responders"))
        raise InputDataError(f"all {len(responders)} labelled patients are "
                             f"{names[0] if responders[0] else names[1]}; "
                             "training needs both", path=cache_dir)
    folds = stratified_folds(found.labels, config.folds, config.seed)
    return Splits(
        seed=config.seed,
        folds_count=config.folds,
        cache=str(Path(cache_dir).resolve()),  # for report / evaluate (issue 7)
        config_hash=config_hash(config),
        label_source=found.source,
        label_names=config.model.label_names,
        excluded_summary=found.exclusion_summary(),
        excluded=found.excluded,
        labels=found.labels,
        folds=folds,
        label_kind=found.kind,
        observe=config.observe,
        times=found.times,
        determined=found.determined,
    )


def _label_spec(config: TrainConfig, labels_csv: Path | None) -> LabelSpec:
    """The label the settings ask for; an early kind without ``observe`` is a usage error."""
    label = config.label
    if labels_csv is None and label.kind in EARLY_KINDS:
        if config.observe is None:
            raise UsageError(f"label.kind {label.kind} predicts what comes after the first k "
                             "scans: set observe (e.g. observe: 2) or label.kind: overall")
        if label.kind == "progression" and config.model.task != "binary":
            raise UsageError("label.kind progression needs model.task binary "
                             f"(got {config.model.task})")
    return LabelSpec(kind=label.kind, observe=config.observe, landmark_days=label.landmark_days,
                     landmark_window_days=label.landmark_window_days)


def _completed_results(run_dir: Path, folds: int) -> dict[str, FoldResult]:
    results: dict[str, FoldResult] = {}
    for k in range(folds):
        path = run_dir / "folds" / str(k) / "result.json"
        if path.is_file() and (path.parent / "model.safetensors").is_file():
            doc = read_fold_result(run_dir, k)
            results[str(k)] = FoldResult(
                name=str(k), best_epoch=doc.best_epoch, epochs_run=doc.epochs_run,
                history=[row.model_dump(exclude_unset=True) for row in doc.history],
                predictions={p: v.model_dump(exclude_unset=True)
                             for p, v in doc.predictions.items()},
            )
    return results


def _rewrite_metrics(run_dir: Path, results: dict[str, FoldResult],
                     checkpoint: dict[str, Any] | None) -> None:
    """metrics.jsonl as an unbroken run would have it at this point (folds, then checkpoint)."""
    rows = [row for k in sorted(results, key=int) for row in results[k].history]
    # A checkpoint of a fold whose result was saved (killed before it was cleared) is stale.
    if checkpoint is not None and str(checkpoint.get("fold")) not in results:
        rows.extend(checkpoint.get("history", []))
    write_metrics(run_dir, (EpochRow.model_validate(row) for row in rows))


def _save_fold(run_dir: Path, result: FoldResult, card: ModelCard) -> None:
    folder = run_dir / "folds" / result.name
    save_model(folder, result.state, card)
    write_fold_result(run_dir, FoldResultDocument(
        fold=result.name, best_epoch=result.best_epoch, epochs_run=result.epochs_run,
        history=[EpochRow.model_validate(row) for row in result.history],
        predictions={p: FoldPrediction.model_validate(v) for p, v in result.predictions.items()},
    ))


def _write_predictions(
    run_dir: Path, results: dict[str, FoldResult], fold_of: dict[str, int],
    labels: dict[str, int], records: dict[str, Any], config: TrainConfig, dist: DistInfo,
    times: dict[str, float],
) -> float | None:
    lines: list[PredictionLine] = []
    y: list[int] = []
    scores: list[float] = []
    for pid in sorted(labels):
        fold = fold_of[pid]
        predicted = results[str(fold)].predictions[pid]
        record = records[pid]
        responder = labels[pid] if config.model.task == "binary" else int(labels[pid] in (0, 1))
        entry: dict[str, Any] = {
            "patient_id": pid,
            "fold": fold,
            "label": labels[pid],
            "responder": responder,
            "probability": round(float(predicted["probability"]), 6),
            "observed": predicted["observed"],
            "days": [tp.days for tp in record.timepoints],
            "burden_ml": [tp.lesion_volume_ml for tp in record.timepoints],
            "forecast_ml": predicted["forecast_ml"],
        }
        for key in ("probabilities", "risk", "features"):
            if key in predicted:
                entry[key] = predicted[key]
        if pid in times:
            entry["time_days"] = times[pid]
            entry["event"] = bool(labels[pid])
        lines.append(PredictionLine.model_validate(entry))
        y.append(responder)
        scores.append(float(predicted["probability"]))
    if dist.is_main:
        write_predictions(run_dir, lines)
    return roc_auc(y, scores)


def _card(config: TrainConfig, manifest: CacheManifest, inputs: ModelInputs,
          train: list[str], fold: int | None, epochs: int, label_kind: str) -> ModelCard:
    landmark = label_kind == "landmark"
    return ModelCard(
        architecture=config.model, label_names=config.model.label_names,
        config_hash=config_hash(config), inputs=inputs, preprocess_config=manifest.config,
        preprocess_config_hash=manifest.config_hash, train_patients=train, fold=fold,
        epochs=epochs,
        # predict re-preprocesses on the training cohort's grid (issue 7: same crops, same p)
        preprocess_fingerprint=manifest.fingerprint,
        label=LabelRecord(
            kind=label_kind,
            landmark_days=config.label.landmark_days if landmark else None,
            landmark_window_days=config.label.landmark_window_days if landmark else None),
    )


def _new_lesion_flags(cache_dir: Path, patients: list[str]) -> dict[str, list[bool]]:
    """Per patient and scan: did tracking (the cache's stored tracks) find a new lesion."""
    from medseq.tracking.stored import tracks_for_cache

    wanted = set(patients)
    flags: dict[str, list[bool]] = {}
    for patient in tracks_for_cache(cache_dir).patients:
        if patient.patient_id in wanted:
            flags[patient.patient_id] = patient.new_lesion_flags()
    return flags


def _crop_shape(cache_dir: Path, record: Any) -> list[int]:
    if record.crop_shape:
        return [int(v) for v in record.crop_shape[-4:]]
    array = np.load(cache_dir / record.crops, mmap_mode="r", allow_pickle=False)
    return [int(v) for v in array.shape[2:]]


def _class_counts(patients: list[str], labels: dict[str, int], task: str) -> tuple[int, int]:
    """(non-responders, responders) among ``patients``."""
    responders = sum(labels[p] == 1 if task == "binary" else labels[p] in (0, 1)
                     for p in patients)
    return len(patients) - responders, responders


def _title(spec: FoldSpec, folds: int) -> str:
    return "final model" if spec.name == FINAL else f"fold {int(spec.name) + 1}/{folds}"


def set_determinism(*, threads: int | None, deterministic: bool) -> None:
    """Thread count and deterministic kernels: the rules ``train`` and ``train-tracker`` share."""
    if threads is not None:
        torch.set_num_threads(threads)
    if deterministic:
        # cuBLAS needs this for deterministic matmuls; harmless elsewhere.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
