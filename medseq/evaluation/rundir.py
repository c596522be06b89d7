"""Reading what ``medseq train`` leaves in a run directory (``docs/architecture.md``).

``evaluate``, ``predict`` and ``report`` all start here, so a run that is missing a file or holds
a broken one fails the same way everywhere: a one-line :class:`~medseq.errors.CacheError`
naming the file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from medseq.contracts import run as contract
from medseq.contracts.cache import MANIFEST_NAME
from medseq.contracts.run import (
    CARD_NAME,
    METRICS_NAME,
    PREDICTIONS_NAME,
    SPLITS_NAME,
    ModelCard,
    PredictionLine,
    Splits,
)
from medseq.errors import CacheError

MODEL_JSON_NAME = CARD_NAME
CONFIG_NAME = "config.yaml"
EVALUATION_NAME = "evaluation.json"

__all__ = ["CONFIG_NAME", "EVALUATION_NAME", "METRICS_NAME", "MODEL_JSON_NAME",
           "PREDICTIONS_NAME", "SPLITS_NAME"]


class ForecastPair(NamedTuple):
    """One next-scan forecast: made at scan t (burden ``previous``), for scan t+1 (``observed``).

    ``previous`` is also the persistence forecast: the last volume carried forward.
    """

    observed: float
    forecast: float
    previous: float


@dataclass(frozen=True)
class PatientPrediction:
    """One line of ``predictions.jsonl`` as evaluation sees it: ``label`` is the responder."""

    patient_id: str
    fold: int | None
    label: int | None
    probability: float
    days: tuple[int, ...] = ()
    burden_ml: tuple[float | None, ...] = ()
    """Observed total lesion burden per scan (mL)."""
    forecast_ml: tuple[float | None, ...] = ()
    """Forecast burden of the NEXT scan, made from each scan's state (mL)."""
    observed: int | None = None
    features: dict[str, float] | None = None
    """Classical measurement features of the observed scans (the feature baseline's input)."""
    risk: float | None = None
    """``progression`` labels: the model's risk score (higher = earlier progression)."""
    time_days: float | None = None
    """``progression`` labels: days from the last observed scan to progression or censoring."""
    event: bool | None = None
    """``progression`` labels: progression seen (True) or censored (False)."""

    @classmethod
    def of(cls, line: PredictionLine) -> PatientPrediction:
        """A RECIST-task run stores the class index as ``label`` and the binary ``responder``
        beside it; evaluation is always responder vs not."""
        return cls(
            patient_id=line.patient_id, fold=line.fold,
            label=line.responder if line.responder is not None else line.label,
            probability=line.probability, days=tuple(line.days),
            burden_ml=tuple(line.burden_ml), forecast_ml=tuple(line.forecast_ml),
            observed=line.observed,
            features=dict(line.features) if line.features is not None else None,
            risk=line.risk, time_days=line.time_days, event=line.event,
        )

    def forecast_pairs(self) -> list[ForecastPair]:
        """The forecast from each scan t against the burden seen at t+1, where the burden at t,
        the forecast and the burden at t+1 are all known (so model and persistence are scored
        on the same pairs)."""
        return forecast_pairs(self.burden_ml, self.forecast_ml)


def forecast_pairs(burden_ml: Sequence[float | None],
                   forecast_ml: Sequence[float | None]) -> list[ForecastPair]:
    """:class:`ForecastPair` of every scan t whose burden, forecast and next burden are known."""
    pairs = []
    for t, forecast in enumerate(forecast_ml):
        if t + 1 < len(burden_ml):
            previous, observed = burden_ml[t], burden_ml[t + 1]
            if (previous is not None and observed is not None and forecast is not None
                    and _finite(previous) and _finite(observed) and _finite(forecast)):
                pairs.append(ForecastPair(float(observed), float(forecast), float(previous)))
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
    return [PatientPrediction.of(line) for line in contract.read_predictions(run_dir)]


def read_splits_document(run_dir: Path) -> Splits:
    """``splits.json`` of the run."""
    return contract.read_splits(run_dir)


def read_splits(run_dir: Path) -> dict[str, int]:
    """Patient id -> the fold that held the patient out, from ``splits.json``."""
    return dict(contract.read_splits(run_dir).folds)


def read_card(run_dir: Path, fold: int | None = None) -> ModelCard | None:
    """``model.json`` of the all-patient model, or of fold ``fold``; None when absent."""
    base = Path(run_dir) if fold is None else contract.fold_dir(run_dir, fold)
    return contract.read_card(base) if (base / CARD_NAME).is_file() else None


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
    """The cache the run was trained on (``cache`` in ``splits.json``), if it still exists.

    A relative path is taken from the run directory's parent, then the working directory.
    """
    run_dir = Path(run_dir)
    if not (run_dir / SPLITS_NAME).is_file():
        return None
    value = contract.read_splits(run_dir).cache
    if not value:
        return None
    path = Path(value)
    for base in ((path,) if path.is_absolute() else (run_dir.parent / path, Path.cwd() / path)):
        if (base / MANIFEST_NAME).is_file():
            return base.resolve()
    return None


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
