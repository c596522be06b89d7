"""What the report reads: the run's files, the stored evaluation, the cache and its tracking.

Nothing is recomputed that an earlier stage stored: ``evaluation.json`` is used when it was
computed from the run's current ``predictions.jsonl`` and ``splits.json`` (its
``inputs_sha256``), and only evaluated again, in memory and with a warning, when it is missing,
unreadable or stale.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseq.console import warn
from medseq.contracts.cache import CacheManifest, read_manifest
from medseq.contracts.evaluation import (
    EVALUATION_NAME,
    Cohort,
    EvaluationDocument,
    read_evaluation,
)
from medseq.contracts.run import ModelCard, Splits
from medseq.errors import CacheError, UsageError
from medseq.evaluation.rundir import (
    PatientPrediction,
    find_cache,
    read_card,
    read_predictions,
    read_run_config,
    read_splits_document,
    require_run,
)
from medseq.report.records import ReportOptions

Tracks = Mapping[str, Mapping[str, Any]]
"""Patient id -> that patient's entry of the tracking document."""


@dataclass
class RunInputs:
    """Everything the report is made from."""

    run_dir: Path
    evaluation: EvaluationDocument
    predictions: dict[str, PatientPrediction]
    splits: dict[str, int]
    training_notes: Splits
    """``splits.json`` as written by training (label source, excluded patients)."""
    card: ModelCard | None
    """``model.json`` of the all-patient model (None when the run has none)."""
    config: dict[str, Any]
    cache_dir: Path | None = None
    manifest: CacheManifest | None = None
    tracks: Tracks = field(default_factory=dict)


def load_inputs(run_dir: Path, options: ReportOptions) -> RunInputs:
    """Read the run (and the cache it was trained on, when found)."""
    run_dir = require_run(run_dir)
    splits_doc = read_splits_document(run_dir)
    inputs = RunInputs(
        run_dir=run_dir,
        evaluation=load_evaluation(run_dir),
        predictions={p.patient_id: p for p in read_predictions(run_dir)},
        splits=dict(splits_doc.folds),
        training_notes=splits_doc,
        card=read_card(run_dir),
        config=read_run_config(run_dir),
        cache_dir=options.cache or find_cache(run_dir),
    )
    if inputs.cache_dir is None:
        warn(f"{run_dir}: the cache it was trained on is not found; pass --cache CACHE for "
             "the per-patient RECIST tables and montages")
    else:
        inputs.manifest = read_manifest(inputs.cache_dir)
        inputs.tracks = load_tracks(inputs.cache_dir)
    return inputs


def load_evaluation(run_dir: Path) -> EvaluationDocument:
    """``RUN/evaluation.json`` when current; else the run evaluated now (default settings)."""
    from medseq.evaluation.evaluate import evaluate_run, run_inputs_hash

    path = run_dir / EVALUATION_NAME
    if not path.is_file():
        reason = f"{run_dir}: no {EVALUATION_NAME}"
    else:
        try:
            doc = read_evaluation(path)
        except CacheError as err:
            reason = str(err)
        else:
            if doc.cohort is not Cohort.CROSS_VALIDATION:
                reason = f"{path}: not a cross-validation evaluation"
            elif doc.inputs_sha256 not in (None, run_inputs_hash(run_dir)):
                reason = (f"{path}: stale (predictions.jsonl or splits.json changed since it "
                          "was written)")
            else:
                return doc
    warn(f"{reason}; evaluating now (run medseq evaluate to keep it)")
    return evaluate_run(run_dir)


def load_tracks(cache_dir: Path) -> dict[str, dict[str, Any]]:
    """RECIST tracking of every patient of the cache, by patient id (stored, computed once)."""
    from medseq.tracking.stored import tracks_for_cache

    doc = tracks_for_cache(cache_dir)
    return {p.patient_id: p.model_dump(mode="json") for p in doc.patients}


def id_mapper(inputs: RunInputs, *, keep_ids: bool) -> Callable[[str], str]:
    """Cache id -> shown id: the cache's pseudonyms, or pseudonyms made now for a keep-ids cache."""
    manifest, run_dir, cache_dir = inputs.manifest, inputs.run_dir, inputs.cache_dir
    if keep_ids or manifest is None or manifest.pseudonymised:
        return lambda pid: pid
    from medseq.contracts.cache import SALT_NAME
    from medseq.preprocess.pseudonym import load_or_create_salt, pseudonym

    key_dir = run_dir if (run_dir / SALT_NAME).is_file() else cache_dir
    if key_dir is None or not (key_dir / SALT_NAME).is_file():
        raise UsageError(f"the cache keeps original ids and no {SALT_NAME} is found to "
                         "pseudonymise them; pass --keep-ids to show them", path=run_dir)
    key = load_or_create_salt(key_dir)
    return lambda pid: pseudonym(pid, key)


def everyone(inputs: RunInputs) -> list[str]:
    """Every patient of the run and its cache, sorted."""
    manifest = inputs.manifest
    return sorted(set(inputs.predictions) | set(manifest.patients if manifest else ()))


def select_patients(options: ReportOptions, inputs: RunInputs) -> list[str]:
    """The patients that get a section: those asked for, else the first ``max_patients``."""
    known = everyone(inputs)
    if options.patients:
        missing = [p for p in options.patients if p not in known]
        if missing:
            raise UsageError(f"--patient {missing[0]}: not in this run (ids are the cache's "
                             "pseudonyms, as evaluate and predict print them)")
        return list(options.patients)
    return known[: options.max_patients]


def omitted(options: ReportOptions, inputs: RunInputs, selected: Sequence[str]) -> int:
    """How many patients have no section."""
    return 0 if options.patients else len(everyone(inputs)) - len(selected)
