"""Reading what ``medseq train`` leaves in a run directory (``docs/architecture.md``).

``evaluate``, ``predict`` and ``report`` all start here, so a run that is missing a file or holds
a broken one fails the same way everywhere: a one-line :class:`~medseq.errors.CacheError`
naming the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseq.errors import CacheError

PREDICTIONS_NAME = "predictions.jsonl"
SPLITS_NAME = "splits.json"
MODEL_JSON_NAME = "model.json"
CONFIG_NAME = "config.yaml"
EVALUATION_NAME = "evaluation.json"
METRICS_NAME = "metrics.jsonl"


@dataclass(frozen=True)
class PatientPrediction:
    """One line of ``predictions.jsonl``: the out-of-fold prediction for a patient."""

    patient_id: str
    fold: int | None
    label: int | None
    probability: float
    days: tuple[int, ...] = ()
    burden_ml: tuple[float | None, ...] = ()
    """Observed total lesion burden per scan (mL)."""
    forecast_ml: tuple[float | None, ...] = ()
    """Forecast burden of the NEXT scan, made from each scan's state (mL)."""
    observed: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def forecast_pairs(self) -> list[tuple[float, float]]:
        """(observed, forecast) pairs: forecast from scan t against the burden seen at t+1."""
        pairs = []
        for t, forecast in enumerate(self.forecast_ml):
            if t + 1 < len(self.burden_ml):
                observed = self.burden_ml[t + 1]
                if _finite(observed) and _finite(forecast):
                    pairs.append((float(observed), float(forecast)))  # type: ignore[arg-type]
        return pairs


def require_run(run_dir: Path) -> Path:
    """Check ``run_dir`` looks like a training run; return it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CacheError("no such run directory (train one with medseq train CACHE -o RUN)",
                         path=run_dir)
    if not (run_dir / PREDICTIONS_NAME).is_file():
        raise CacheError(f"not a finished training run: no {PREDICTIONS_NAME}", path=run_dir)
    return run_dir


def read_predictions(run_dir: Path) -> list[PatientPrediction]:
    """Parse ``predictions.jsonl``; one record per patient, in file order."""
    path = Path(run_dir) / PREDICTIONS_NAME
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise CacheError(f"cannot read ({err.strerror})", path=path) from None
    out: list[PatientPrediction] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            record = _prediction(row)
        except (ValueError, TypeError, KeyError) as err:
            raise CacheError(f"line {number}: invalid prediction ({err})", path=path) from None
        if record.patient_id in seen:
            raise CacheError(f"line {number}: patient {record.patient_id} twice", path=path)
        seen.add(record.patient_id)
        out.append(record)
    if not out:
        raise CacheError("no predictions", path=path)
    return out


def read_splits(run_dir: Path) -> dict[str, int]:
    """Patient id -> the fold that held the patient out, from ``splits.json``.

    Accepts ``{"patients": {id: fold}}`` (also under the keys ``patient_fold``, ``assignments``
    or ``patient_to_fold``) or ``{"folds": [[ids of fold 0], ...]}`` / ``[{"fold": k,
    "validation"|"val"|"test"|"patients": [ids]}, ...]``.
    """
    path = Path(run_dir) / SPLITS_NAME
    data = read_json(path)
    if not isinstance(data, dict):
        raise CacheError("splits must be a JSON object", path=path)
    for key in ("patients", "patient_fold", "assignments", "patient_to_fold"):
        mapping = data.get(key)
        if isinstance(mapping, dict):
            return {str(k): int(v) for k, v in mapping.items()}
    folds = data.get("folds")
    out: dict[str, int] = {}
    if isinstance(folds, list):
        for k, entry in enumerate(folds):
            ids: Any = entry
            fold = k
            if isinstance(entry, dict):
                fold = int(entry.get("fold", k))
                ids = next((entry[n] for n in ("validation", "val", "test", "held_out",
                                               "patients") if n in entry), None)
            if not isinstance(ids, list):
                raise CacheError(f"fold {k}: no list of held-out patients", path=path)
            for pid in ids:
                out[str(pid)] = fold
        return out
    if isinstance(folds, dict):
        return {str(k): int(v) for k, v in folds.items()}
    raise CacheError("no patient -> fold assignment found", path=path)


def read_model_info(run_dir: Path, fold: int | None = None) -> dict[str, Any]:
    """``model.json`` of the all-patient model, or of fold ``fold``; {} when absent."""
    base = Path(run_dir) if fold is None else Path(run_dir) / "folds" / str(fold)
    path = base / MODEL_JSON_NAME
    if not path.is_file():
        return {}
    data = read_json(path)
    return data if isinstance(data, dict) else {}


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The resolved ``config.yaml`` as a mapping ({} when absent)."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise CacheError(f"unreadable config ({err})", path=path) from None
    return data if isinstance(data, dict) else {}


def find_cache(run_dir: Path) -> Path | None:
    """The cache the run was trained on, from ``model.json`` or ``config.yaml``, if it exists.

    Relative paths are tried against the run directory's parent and the working directory.
    """
    run_dir = Path(run_dir)
    candidates: list[Any] = []
    info = read_model_info(run_dir)
    config = read_run_config(run_dir)
    splits = read_json(run_dir / SPLITS_NAME) if (run_dir / SPLITS_NAME).is_file() else {}
    for source in (info, config, splits if isinstance(splits, dict) else {}):
        for key in ("cache", "cache_dir", "data", "cache_path"):
            candidates.append(source.get(key))
        for section in ("data", "training", "run"):
            sub = source.get(section)
            if isinstance(sub, dict):
                candidates.extend(sub.get(k) for k in ("cache", "cache_dir", "path"))
    for value in candidates:
        if not isinstance(value, str) or not value:
            continue
        path = Path(value)
        for base in ((path,) if path.is_absolute() else (run_dir / path, run_dir.parent / path,
                                                          Path.cwd() / path)):
            if (base / "manifest.json").is_file():
                return base.resolve()
    return None


def read_json(path: Path) -> Any:
    """Load a JSON file, or a one-line CacheError naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CacheError("missing", path=path) from None
    except (OSError, ValueError) as err:
        raise CacheError(f"unreadable JSON ({err})", path=path) from None


def _prediction(row: dict[str, Any]) -> PatientPrediction:
    if not isinstance(row, dict):
        raise TypeError("not an object")
    probability = float(row["probability"])
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability {probability} outside [0, 1]")
    # A RECIST-task run stores the class index as ``label`` and the binary ``responder`` beside
    # it; evaluation is always responder vs not.
    label = row.get("responder", row.get("label"))
    known = {"schema_version", "patient_id", "fold", "label", "responder", "probability", "days",
             "burden_ml", "forecast_ml", "observed"}
    return PatientPrediction(
        patient_id=str(row["patient_id"]),
        fold=None if row.get("fold") is None else int(row["fold"]),
        label=None if label is None else int(label),
        probability=probability,
        days=tuple(int(d) for d in _as_list(row.get("days"))),
        burden_ml=tuple(_opt_float(v) for v in _as_list(row.get("burden_ml"))),
        forecast_ml=tuple(_opt_float(v) for v in _as_list(row.get("forecast_ml"))),
        observed=row.get("observed"),
        extra={k: v for k, v in row.items() if k not in known},
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
