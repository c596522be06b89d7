"""Predict response for new patients: the whole chain in one process, nothing left on disk.

For one study (a DICOM tree, NIfTI layout or manifest holding one patient): discovery, the
preprocessing recorded in the model (into a temporary folder that is removed afterwards),
tracking with RECIST 1.1, and the model. A patient of the training cohort (recognised by its
pseudonym under the run's ``salt.key``) is scored by the fold model that held it out, so the
probability equals the out-of-fold one ``evaluate`` recorded; anyone else by the all-patient
model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseq import __version__
from medseq.contracts.cache import SALT_NAME
from medseq.contracts.prediction import PatientPredictionDocument, PredictionFailure, PredictLine
from medseq.contracts.run import ModelCard
from medseq.errors import CacheError, InputDataError, UsageError
from medseq.io.cohort import Cohort, Patient
from medseq.preprocess.pseudonym import read_salt, write_salt
from medseq.processes import owner_alive, owner_tag

if TYPE_CHECKING:
    from medseq.models.inference import LoadedModel

THRESHOLD = 0.5
"""Probability at or above which ``class`` is ``responder`` (the threshold evaluate uses)."""
RUNS_DIRS = (Path("runs"), Path("medseq-demo") / "runs")
"""Where predict looks for trained runs without ``--model`` (``scripts/demo.sh`` trains into
``medseq-demo/runs/demo``), relative to the working directory."""
WORKDIR_PREFIX = "medseq-predict-"
"""Temporary folders are ``<tmp>/medseq-predict-<host>-<pid>-<random>``."""


@dataclass
class LoadedRun:
    """A training run ready to predict: model cards, fold assignment, pseudonym key."""

    run_dir: Path
    card: ModelCard
    """The model card of the all-patient model."""
    folds: dict[str, int]
    config_hash: str | None
    salt: bytes | None
    fingerprint: dict[str, Any]
    _models: dict[str, LoadedModel] = field(default_factory=dict)

    def model_for(self, patient_id: str) -> tuple[LoadedModel, int | None]:
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
            self._models[key] = load_model(where)
        return self._models[key], fold


def resolve_run(model: Path | None, *, cwd: Path | None = None) -> Path:
    """``--model RUN``, else the newest run holding a ``model.json`` under ``./runs/`` or
    ``./medseq-demo/runs/`` (relative to ``cwd``, so the path can be shown as found)."""
    if model is not None:
        if not (model / "model.json").is_file() and not (model / "folds").is_dir():
            raise CacheError("not a trained run (no model.json); train one with "
                             "medseq train CACHE -o RUN", path=model)
        return model
    base = cwd or Path.cwd()
    candidates = [folder / run.name for folder in RUNS_DIRS if (base / folder).is_dir()
                  for run in (base / folder).iterdir() if (run / "model.json").is_file()]
    if not candidates:
        raise UsageError("no trained model under ./runs/ or ./medseq-demo/runs/: pass --model "
                         "RUN, or train one first with medseq train CACHE -o runs/NAME")
    newest = max(candidates, key=lambda p: ((base / p / "model.json").stat().st_mtime, str(p)))
    return newest if cwd is None else base / newest


def load_run(run_dir: Path) -> LoadedRun:
    """Read what predicting needs from a run directory (weights load lazily)."""
    from medseq.contracts.run import SPLITS_NAME, Splits, read_card, read_splits

    card = read_card(run_dir)
    splits = read_splits(run_dir) if (run_dir / SPLITS_NAME).is_file() else Splits()
    salt = read_salt(run_dir)
    fingerprint = dict(card.preprocess_fingerprint)
    if not fingerprint:
        fingerprint = _cache_fingerprint(run_dir)
    return LoadedRun(run_dir=run_dir, card=card, folds=dict(splits.folds),
                     config_hash=splits.config_hash, salt=salt, fingerprint=fingerprint)


def discover_study(study: Path, *, series: str | None = None) -> Cohort:
    """Discovery for predict: every unusable input is an InputDataError (exit 2)."""
    from medseq.io.discover import discover

    return discover(study, series=series)


def predict_one(
    study: Path, run: LoadedRun, *, series: str | None = None, keep_ids: bool = False,
    tracker: Path | None = None,
) -> PatientPredictionDocument:
    """Predict the single patient of ``study``; the document ``medseq predict --json`` prints."""
    start = time.perf_counter()
    cohort = discover_study(study, series=series)
    if len(cohort.patients) != 1:
        raise InputDataError(f"holds {len(cohort.patients)} patients; predict takes one "
                             "(use --all for a cohort)", path=study)
    timings = {"discover": time.perf_counter() - start}
    doc = predict_patient_of(cohort, cohort.patients[0], run, keep_ids=keep_ids, timings=timings,
                             tracker=tracker)
    doc.warnings = list(cohort.warnings) + doc.warnings
    return doc


def predict_cohort(
    cohort_dir: Path, run: LoadedRun, *, shard: tuple[int, int] | None = None,
    series: str | None = None, keep_ids: bool = False,
    on_patient: Callable[[int, int], None] | None = None,
    on_plan: Callable[[list[str], list[str]], None] | None = None, tracker: Path | None = None,
) -> Iterator[PredictLine]:
    """Predict every patient (this shard's part, in pseudonym order); failures become rows
    with an ``error`` instead of stopping the cohort. ``on_plan`` is called first with the
    ids of the whole cohort and of this shard, in that order.

    Raises:
        CacheError: the run has no ``salt.key`` and ``keep_ids`` is off: the rows could only
            name patients by their real ids.
    """
    if run.salt is None and not keep_ids:
        raise CacheError(f"the run has no {SALT_NAME}, so patients cannot get their pseudonyms "
                         "and predict --all would print real patient ids; copy "
                         f"{SALT_NAME} from the training cache into the run, or pass --keep-ids "
                         "to report the input's ids", path=run.run_dir)
    cohort = discover_study(cohort_dir, series=series)
    order = sorted(cohort.patients, key=lambda p: _pseudonym(p.patient_id, run.salt))
    everyone = order
    if shard is not None:
        k, n = shard
        order = order[k - 1::n]
    if on_plan is not None:
        def shown(patients: list[Patient]) -> list[str]:
            return [p.patient_id if keep_ids else _pseudonym(p.patient_id, run.salt)
                    for p in patients]

        on_plan(shown(everyone), shown(order))
    # The tracker is passed on only when given (callers may stand in for predict_patient_of).
    with_tracker = {} if tracker is None else {"tracker": tracker}
    for done, patient in enumerate(order, start=1):
        try:
            yield predict_patient_of(cohort, patient, run, keep_ids=keep_ids, timings={},
                                     **with_tracker)
        except InputDataError as err:
            pid = patient.patient_id if keep_ids else _pseudonym(patient.patient_id, run.salt)
            yield PredictionFailure(patient_id=pid, error=err.reason)
        if on_patient is not None:
            on_patient(done, len(order))


def predict_patient_of(
    cohort: Cohort, patient: Patient, run: LoadedRun, *, keep_ids: bool,
    timings: dict[str, float], tracker: Path | None = None,
) -> PatientPredictionDocument:
    """Preprocess, track and score one discovered patient in a temporary cache.

    With ``tracker`` (a ``train-tracker`` folder, or ``bundled``) timepoints without a mask are
    segmented by it first (:func:`medseq.tracker.integrate.fill_for_predict`); given masks
    always win.
    """
    import numpy as np

    from medseq.contracts.cache import read_manifest
    from medseq.models.inference import predict_patient
    from medseq.preprocess.runner import run_preprocess
    from medseq.tracking.pipeline import track_patient

    warnings: list[str] = []
    if run.salt is None:
        warnings.append(f"the run has no {SALT_NAME}: the pseudonym will not match the training "
                        "cache, so the all-patient model is used")
    config = _preprocess_config(run)
    _remove_abandoned_workdirs()
    tmp = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{owner_tag()}-"))
    try:
        if run.salt is not None:
            write_salt(tmp, run.salt)
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
            tracking = after_tracking([tracking], provenance)[0]
        track_doc = tracking.model_dump(mode="json")  # a new patient: nothing stored
        timings["track"] = time.perf_counter() - t0
        if not record.crops or not record.targets:
            raise InputDataError("no lesion to predict from: the model needs a lesion mask "
                                 "with at least one lesion at baseline", path=cohort.root)
        ordered = sorted(record.timepoints, key=lambda tp: tp.index)
        if not record.has_mask:
            missing = [f"t{tp.index:02d}" for tp in ordered if not tp.mask]
            raise InputDataError(f"no lesion mask at {', '.join(missing)}: give a mask for "
                                 "every scan, or let the learned tracker segment them "
                                 "(--tracker bundled)", path=cohort.root)
        crops = np.load(cache_dir / record.crops, allow_pickle=False)
        days = [tp.days for tp in ordered]
        t0 = time.perf_counter()
        model, fold = run.model_for(record.patient_id)
        timings["model_load"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = predict_patient(model, crops, days,
                                 burden_ml=[tp.lesion_volume_ml for tp in ordered],
                                 new_lesions=tracking.new_lesion_flags() or None)
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
    kind = model.card.label_kind
    forecast = [float(v) for v in result.get("forecast_ml", [])]
    return PatientPredictionDocument.model_validate({
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
            "class": _class_name(probability, kind),
            "label_kind": kind,
            "risk": result.get("risk"),
            "features": result.get("features"),
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
            "medseq_version": run.card.medseq_version,
            "config_hash": run.config_hash,
            "preprocess_config_hash": run.card.preprocess_config_hash,
            "label_names": run.card.label_names,
        },
        "medseq_version": __version__,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "warnings": warnings,
    })


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
    from medseq.contracts.cache import read_manifest
    from medseq.evaluation.rundir import find_cache

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


def _remove_abandoned_workdirs() -> None:
    """Delete temporary folders of predict processes that were killed (SIGKILL, power loss):
    ours, on this machine, whose process is gone. They hold images and a copy of the key."""
    pattern = re.compile(re.escape(WORKDIR_PREFIX) + r"([0-9a-f]{6})-(\d+)-")
    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or owner_alive(match.group(1), int(match.group(2))) is not False:
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False) and entry.stat().st_uid == os.getuid():
                shutil.rmtree(entry.path, ignore_errors=True)


def _class_name(probability: float, kind: str) -> str:
    """The class a probability falls in at ``THRESHOLD`` for a model predicting ``kind``."""
    if kind == "progression":
        return "progression" if probability >= THRESHOLD else "no-progression"
    return "responder" if probability >= THRESHOLD else "non-responder"
