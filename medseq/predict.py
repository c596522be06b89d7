"""Predict response for new patients: the whole chain in one process, nothing left on disk.

For one study (a DICOM tree, NIfTI layout or manifest holding one patient): discovery, the
preprocessing recorded in the model (into a temporary folder that is removed afterwards),
tracking with RECIST 1.1, and the model. A patient of the training cohort (recognised by its
pseudonym under the run's ``salt.key``) is scored by the fold model that held it out, so the
probability equals the out-of-fold one ``evaluate`` recorded; anyone else by the all-patient
model.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseq import __version__
from medseq.errors import CacheError, InputDataError, UsageError
from medseq.evaluation.rundir import read_json
from medseq.io.cohort import Cohort, Patient
from medseq.preprocess.pseudonym import read_salt

THRESHOLD = 0.5
"""Probability at or above which ``class`` is ``responder`` (the threshold evaluate uses)."""
RUNS_DIR = Path("runs")


@dataclass
class LoadedRun:
    """A training run ready to predict: model cards, fold assignment, pseudonym key."""

    run_dir: Path
    card: Any
    """:class:`medseq.models.io.ModelCard` of the all-patient model."""
    folds: dict[str, int]
    config_hash: str | None
    salt: bytes | None
    fingerprint: dict[str, Any]
    _models: dict[str, Any] = field(default_factory=dict)

    def model_for(self, patient_id: str) -> tuple[Any, int | None]:
        """The model to score ``patient_id`` with, and the fold it held out (None: all-patient)."""
        from medseq.models.inference import load_model

        fold = self.folds.get(patient_id)
        where = self.run_dir / "folds" / str(fold) if fold is not None else self.run_dir
        key = str(where)
        if key not in self._models:
            if not (where / "model.safetensors").is_file():
                if fold is None:
                    raise CacheError("the run has no all-patient model (model.safetensors); "
                                     "train with final_model: true", path=self.run_dir)
                raise CacheError(f"fold {fold} model is missing", path=where)
            self._models[key] = load_model(where)[0]
        return self._models[key], fold


def resolve_run(model: Path | None, *, cwd: Path | None = None) -> Path:
    """``--model RUN``, else the newest run under ``./runs/`` holding a ``model.json``."""
    if model is not None:
        if not (model / "model.json").is_file() and not (model / "folds").is_dir():
            raise CacheError("not a trained run (no model.json); train one with "
                             "medseq train CACHE -o RUN", path=model)
        return model
    runs = (cwd or Path.cwd()) / RUNS_DIR
    candidates = [p for p in runs.iterdir() if (p / "model.json").is_file()] if runs.is_dir() \
        else []
    if not candidates:
        raise UsageError("no trained model: pass --model RUN, or train one first with "
                         "medseq train CACHE -o runs/NAME")
    return max(candidates, key=lambda p: (p / "model.json").stat().st_mtime)


def load_run(run_dir: Path) -> LoadedRun:
    """Read what predicting needs from a run directory (weights load lazily)."""
    from medseq.models.io import read_card

    card = read_card(run_dir)
    splits_path = run_dir / "splits.json"
    splits = read_json(splits_path) if splits_path.is_file() else {}
    folds_raw = splits.get("folds") if isinstance(splits, dict) else None
    folds = {str(k): int(v) for k, v in folds_raw.items()} if isinstance(folds_raw, dict) else {}
    salt = read_salt(run_dir)
    fingerprint = dict(getattr(card, "preprocess_fingerprint", None) or {})
    if not fingerprint:
        fingerprint = _cache_fingerprint(run_dir)
    return LoadedRun(run_dir=run_dir, card=card, folds=folds,
                     config_hash=splits.get("config_hash") if isinstance(splits, dict) else None,
                     salt=salt, fingerprint=fingerprint)


def discover_study(study: Path, *, series: str | None = None) -> Cohort:
    """Discovery for predict: every unusable input is an InputDataError (exit 2)."""
    from medseq.io.discover import discover

    return discover(study, series=series)


def predict_one(
    study: Path, run: LoadedRun, *, series: str | None = None, keep_ids: bool = False,
    tracker: Path | None = None,
) -> dict[str, Any]:
    """Predict the single patient of ``study``; the document ``medseq predict --json`` prints."""
    start = time.perf_counter()
    cohort = discover_study(study, series=series)
    if len(cohort.patients) != 1:
        raise InputDataError(f"holds {len(cohort.patients)} patients; predict takes one "
                             "(use --all for a cohort)", path=study)
    timings = {"discover": time.perf_counter() - start}
    doc = predict_patient_of(cohort, cohort.patients[0], run, keep_ids=keep_ids, timings=timings,
                             tracker=tracker)
    doc["warnings"] = list(cohort.warnings) + doc["warnings"]
    return doc


def predict_cohort(
    cohort_dir: Path, run: LoadedRun, *, shard: tuple[int, int] | None = None,
    series: str | None = None, keep_ids: bool = False,
    on_patient: Callable[[int, int], None] | None = None, tracker: Path | None = None,
) -> Iterator[dict[str, Any]]:
    """Predict every patient (this shard's part, in pseudonym order); failures become rows
    with an ``error`` instead of stopping the cohort."""
    cohort = discover_study(cohort_dir, series=series)
    order = sorted(cohort.patients, key=lambda p: _pseudonym(p.patient_id, run.salt))
    if shard is not None:
        k, n = shard
        order = order[k - 1::n]
    for done, patient in enumerate(order, start=1):
        try:
            yield predict_patient_of(cohort, patient, run, keep_ids=keep_ids, timings={},
                                     tracker=tracker)
        except InputDataError as err:
            pid = patient.patient_id if keep_ids else _pseudonym(patient.patient_id, run.salt)
            yield {"patient_id": pid, "error": err.reason}
        if on_patient is not None:
            on_patient(done, len(order))


def predict_patient_of(
    cohort: Cohort, patient: Patient, run: LoadedRun, *, keep_ids: bool,
    timings: dict[str, float], tracker: Path | None = None,
) -> dict[str, Any]:
    """Preprocess, track and score one discovered patient in a temporary cache.

    With ``tracker`` (a ``train-tracker`` folder) timepoints without a mask are segmented by
    it first (:func:`medseq.tracker.integrate.fill_for_predict`); given masks always win.
    """
    import numpy as np

    from medseq.models.inference import predict_patient
    from medseq.preprocess.manifest import read_manifest
    from medseq.preprocess.runner import run_preprocess
    from medseq.tracking.pipeline import track_patient, tracks_document

    warnings: list[str] = []
    if run.salt is None:
        warnings.append("the run has no salt.key: the pseudonym will not match the training "
                        "cache, so the all-patient model is used")
    config = _preprocess_config(run)
    tmp = Path(tempfile.mkdtemp(prefix="medseq-predict-"))
    try:
        if run.salt is not None:
            (tmp / "salt.key").write_text(run.salt.hex() + "\n", encoding="ascii")
        single = dataclasses.replace(cohort, patients=(patient,))
        t0 = time.perf_counter()
        summary = run_preprocess(single, tmp, config=config, workers=1)
        timings["preprocess"] = time.perf_counter() - t0
        if summary.failed:
            raise InputDataError(f"cannot be preprocessed: {summary.failed[0].error}",
                                 path=cohort.root)
        manifest = read_manifest(tmp)
        record = manifest.ok_patients()[0]
        stage_times = getattr(record, "timings", None) or {}
        for key, value in stage_times.items():
            if key != "committed_at":
                timings[f"preprocess.{key}"] = float(value)
        cache_dir, provenance = tmp, None
        if tracker is not None:  # the learned tracker: masks first, then the usual steps
            from medseq.tracker.integrate import after_tracking, fill_for_predict

            t0 = time.perf_counter()
            cache_dir, provenance = fill_for_predict(tmp, tracker)
            record = read_manifest(cache_dir).patients[record.patient_id]
            timings["tracker"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        tracking = track_patient(cache_dir, record)
        if provenance is not None:
            from medseq.tracker.provenance import annotate_document

            tracking = after_tracking([tracking], provenance)[0]
            track_doc = tracks_document([tracking])["patients"][0]
            annotate_document([track_doc], [tracking], provenance)
        else:
            track_doc = tracks_document([tracking])["patients"][0]
        timings["track"] = time.perf_counter() - t0
        if not record.crops or not record.targets:
            raise InputDataError("no lesion to predict from: the model needs a lesion mask "
                                 "with at least one lesion at baseline", path=cohort.root)
        crops = np.load(cache_dir / record.crops, allow_pickle=False)
        days = [tp.days for tp in sorted(record.timepoints, key=lambda tp: tp.index)]
        t0 = time.perf_counter()
        model, fold = run.model_for(record.patient_id)
        timings["model_load"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = predict_patient(model, crops, days)
        timings["model"] = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for tp in record.timepoints:
        if not tp.registration.ok:
            warnings.append(f"timepoint {tp.index}: registration flagged "
                            f"({tp.registration.message})")
    if track_doc.get("note"):
        warnings.append(str(track_doc["note"]))
    observed = int(result.get("observed", len(days)))
    if observed < len(days):
        warnings.append(f"the model uses the first {observed} of {len(days)} scans")
    probability = float(result["probability"])
    forecast = [float(v) for v in result.get("forecast_ml", [])]
    return {
        "patient_id": patient.patient_id if keep_ids else record.patient_id,
        "layout": cohort.layout.value,
        "modality": record.modality,
        "timepoints": [
            {"index": tp.index, "days": tp.days, "days_since_previous": tp.days_since_previous,
             "lesion_volume_ml": tp.lesion_volume_ml, "registration_ok": tp.registration.ok}
            for tp in sorted(record.timepoints, key=lambda tp: tp.index)
        ],
        "targets": track_doc.get("targets", []),
        "lesions": track_doc.get("lesions", []),
        "recist": track_doc.get("responses", []),
        "best_overall_response": track_doc.get("best_overall_response"),
        "prediction": {
            "probability": probability,
            "class": "responder" if probability >= THRESHOLD else "non-responder",
            "threshold": THRESHOLD,
            "probabilities": result.get("probabilities"),
            "observed_scans": observed,
            "forecast_ml": forecast,
            "forecast_next_ml": forecast[-1] if forecast else None,
        },
        "model": {
            "run": run.run_dir.name,
            "used": "all-patient model" if fold is None else f"fold {fold} model (held this "
                    "patient out)",
            "fold": fold,
            "in_training_cohort": fold is not None,
            "medseq_version": getattr(run.card, "medseq_version", None),
            "config_hash": run.config_hash,
            "preprocess_config_hash": getattr(run.card, "preprocess_config_hash", None),
            "label_names": getattr(run.card, "label_names", None),
        },
        "medseq_version": __version__,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "warnings": warnings,
    }


def _preprocess_config(run: LoadedRun) -> Any:
    """The preprocessing settings the model was trained with, at the training cohort's spacing."""
    from pydantic import ValidationError

    from medseq.config import first_validation_error
    from medseq.preprocess.config import PreprocessConfig

    settings = dict(getattr(run.card, "preprocess_config", None) or {})
    spacing = run.fingerprint.get("target_spacing")
    if settings.get("target_spacing") is None and isinstance(spacing, list) and len(spacing) == 3:
        settings["target_spacing"] = spacing
    try:
        return PreprocessConfig.model_validate(settings)
    except ValidationError as err:
        where, message = first_validation_error(err)
        raise CacheError(f"model.json preprocess_config is not valid for this medseq "
                         f"({where}: {message})", path=run.run_dir) from None


def _cache_fingerprint(run_dir: Path) -> dict[str, Any]:
    """The training cache's fingerprint, when the run records where the cache is."""
    from medseq.evaluation.rundir import find_cache
    from medseq.preprocess.manifest import read_manifest

    cache = find_cache(run_dir)
    if cache is None:
        return {}
    try:
        return dict(read_manifest(cache).fingerprint)
    except CacheError:
        return {}


def _pseudonym(patient_id: str, salt: bytes | None) -> str:
    if salt is None:
        return patient_id
    from medseq.preprocess.pseudonym import pseudonym

    return pseudonym(patient_id, salt)
