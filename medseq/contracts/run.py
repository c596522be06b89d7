"""The run directory ``medseq train`` writes: splits, predictions, metrics, model cards, folds.

One model, one writer (in ``medseq.training`` / ``medseq.models.io``) and one reader per file:

- ``splits.json``: :class:`Splits` (:func:`write_splits`, :func:`read_splits`);
- ``predictions.jsonl``: :class:`PredictionLine` (:func:`write_predictions`,
  :func:`read_predictions`);
- ``metrics.jsonl``: :class:`MetricsLine` (:func:`write_metrics` / :func:`append_metrics`,
  :func:`read_metrics`);
- ``model.json``: :class:`ModelCard` (:func:`write_card`, :func:`read_card`);
- ``folds/K/result.json``: :class:`FoldResultDocument` (:func:`write_fold_result`,
  :func:`read_fold_result`).

Documents written before versioning (no ``schema_version``) have the version-1 shape and are
read as version 1; an older version still read is converted to the current shape
(:meth:`Document.upgrade`; ``model.json`` is at version 2); a newer major version is refused with
a one-line reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from medseq import __version__
from medseq.contracts.document import (
    Document,
    Record,
    read_document,
    read_lines,
    write_document,
)
from medseq.errors import CacheError
from medseq.io.atomic import write_text_atomic

SPLITS_NAME = "splits.json"
PREDICTIONS_NAME = "predictions.jsonl"
METRICS_NAME = "metrics.jsonl"
CARD_NAME = "model.json"
FOLD_RESULT_NAME = "result.json"
FOLDS_DIR = "folds"
CARD_FORMAT = 1
REGENERATE = "retrain with medseq train CACHE -o RUN"

RECIST_CLASSES: tuple[str, ...] = ("CR", "PR", "SD", "PD")
"""Class order of the ``recist`` task; responders are the first two."""
BINARY_CLASSES: tuple[str, ...] = ("non-responder", "responder")


class RunDocument(Document):
    """Base of the run directory's documents (version 1, except ``model.json`` at 2)."""

    SCHEMA: ClassVar[int] = 1
    OLDEST: ClassVar[int] = 1
    REGENERATE: ClassVar[str] = REGENERATE
    UNVERSIONED: ClassVar[int | None] = 1


# ------------------------------------------------------------------------------ model.json

class ModelConfig(Record):
    """What the network looks like; saved in ``model.json`` so a model rebuilds itself."""

    encoder: Literal["small", "resnet10", "resnet18", "flatten"] = "small"
    """``small``: a 4-block 3D CNN (~0.2 M parameters) that trains on CPUs; the MONAI ResNets
    belong on a GPU; ``flatten``: no CNN, the raw (downsampled) crop voxels go straight into the
    recurrent cell, as the project's seed reference (a Keras SimpleRNN over images) does."""
    widths: list[int] = Field(default_factory=lambda: [8, 16, 32, 64], min_length=1)
    """Channels of the small encoder's blocks (each block after the first halves the size)."""
    embed: int = Field(default=64, ge=4)
    """Lesion embedding size."""
    pooling: Literal["attention", "mean"] = "attention"
    """How lesion embeddings of one timepoint are pooled (padding lesions are masked out)."""
    cell: Literal["lstm", "gru", "rnn"] = "lstm"
    layers: int = Field(default=1, ge=1, le=4)
    hidden: int = Field(default=64, ge=4)
    time: Literal["none", "concat", "decay"] = "concat"
    """``none``: the intervals are not input; ``concat``: days since baseline and since the
    previous scan join the timepoint embedding; ``decay``: as concat, and the recurrent memory is
    discounted by g(dt) = 1/log(e + dt) before each step (T-LSTM style)."""
    time_scale_days: float = Field(default=100.0, gt=0)
    """Days are divided by this before entering the network."""
    task: Literal["binary", "recist"] = "binary"
    """``binary``: responder (CR/PR) vs not; ``recist``: the four RECIST classes."""
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    in_channels: int = Field(default=2, ge=1)
    """Image and mask channel of each crop."""
    first_block_norm: bool = False
    """GroupNorm in the small encoder's first block. Off: the first block sees absolute HU and
    lesion size (a normalisation there removes each crop's intensity level and scale)."""
    measurements: bool = True
    """Feed the lesion measurements (:mod:`medseq.models.measurements`) beside each lesion's
    embedding and the per-scan burden features beside each timepoint's."""
    pool_stats: bool = True
    """Pool lesions with their sum and maximum beside the attention (or mean) average, so
    lesion count and total burden survive pooling."""
    bidirectional: bool = False
    """Read the sequence both ways (retrospective analysis only: refused with early
    prediction, since the backward pass reads later scans)."""
    flatten_edge: int = Field(default=8, ge=1, le=32)
    """``flatten`` encoder: crops are average-pooled to this edge and flattened."""

    @property
    def n_outputs(self) -> int:
        """Width of the response head."""
        return 1 if self.task == "binary" else len(RECIST_CLASSES)

    @property
    def label_names(self) -> list[str]:
        """Names of the label values, in order."""
        return list(BINARY_CLASSES if self.task == "binary" else RECIST_CLASSES)


CHANNELS: tuple[str, ...] = ("image", "mask")
"""The channels of a cached lesion crop, in order."""
FEATURES: tuple[str, ...] = ("days", "days_since_previous")
"""The per-scan numbers fed beside the crops (``architecture.time`` decides their use)."""
LESION_MEASUREMENTS: tuple[str, ...] = (
    "present", "log_volume", "longest_diameter", "short_axis", "mean_hu", "rim_hu", "core_hu",
    "log_volume_ratio_baseline", "log_volume_ratio_previous", "growth_per_100d",
    "diameter_ratio_baseline", "mean_hu_change", "rim_hu_change", "core_hu_change",
)
"""Per lesion and scan (:mod:`medseq.models.measurements`), scaled to about unit range
(diameters / 50 mm, HU / 100, HU changes / 10, volumes as log1p mL)."""
SCAN_MEASUREMENTS: tuple[str, ...] = (
    "log_burden", "log_burden_ratio_baseline", "visible_lesions", "new_lesions",
)
"""Per scan: total lesion volume of the whole mask (log1p mL) and its log ratio to baseline,
target lesions visible (/ 5), and whether tracking found a new lesion."""
CLASSICAL_FEATURES: tuple[str, ...] = (
    "log_burden_ratio", "sod_ratio", "mean_hu_change", "rim_hu_change", "core_hu_change",
    "log_burden_baseline", "lesion_count", "growth_per_100d",
)
"""Per patient, last observed scan against baseline: the classical feature model's input
(``predictions.jsonl``'s ``features``)."""


class ModelInputs(Record):
    """What the model is fed: the one input specification of ``model.json``.

    ``medseq.models.inputs.prepare_inputs`` applies it, in training and in inference alike.
    """

    observe: int | None = Field(default=None, ge=1)
    """Scans the model sees per patient (the first k); None for all."""
    crop_shape: list[int] | None = None
    """[C, S, S, S] of one lesion crop, as cached."""
    input_size: int | None = Field(default=None, ge=4)
    """Crops are resized to this edge length before the encoder (None: used as cached)."""
    channels: list[str] = Field(default_factory=lambda: list(CHANNELS))
    """The channels of each crop, in order."""
    features: list[str] = Field(
        default_factory=lambda: list(FEATURES))
    """The per-scan numbers beside the crops, in order (days from baseline, days since the
    previous scan)."""
    lesion_measurements: list[str] = Field(default_factory=list)
    """Measurements per lesion and scan, measured on the crops (empty: none are fed)."""
    scan_measurements: list[str] = Field(default_factory=list)
    """Measurements per scan (burden, visible lesions, new-lesion flag; empty: none)."""
    crop_spacing_mm: float | None = None
    """Voxel size of the cached crops, for the measurements."""
    hu_offset: float = 0.0
    hu_scale: float = 1.0
    """HU = hu_offset + hu_scale x the image channel (the inverse of the CT window)."""

    @field_validator("channels", "features", "lesion_measurements", "scan_measurements",
                     mode="after")
    @classmethod
    def _as_fed(cls, values: list[str], info: ValidationInfo) -> list[str]:
        fed = {"channels": CHANNELS, "features": FEATURES,
               "lesion_measurements": LESION_MEASUREMENTS,
               "scan_measurements": SCAN_MEASUREMENTS}[str(info.field_name)]
        required = info.field_name in ("channels", "features")
        if (values or required) and tuple(values) != fed:
            raise ValueError(f"this medseq feeds {', '.join(fed)} (got {', '.join(values)})")
        return values

    def observed(self, scans: int) -> int:
        """How many of a patient's ``scans`` the model sees."""
        return min(scans, self.observe) if self.observe else scans


class LabelRecord(Record):
    """The label a model was trained on (``model.json``'s ``label``)."""

    kind: str = "overall"
    """:data:`LABEL_KINDS`; ``given`` for labels from a CSV."""
    landmark_days: float | None = None
    """``landmark``: the day whose response is the label."""
    landmark_window_days: float | None = None
    """``landmark``: how far from that day the scan may lie."""


class ModelCard(RunDocument):
    """``model.json``: what a saved model is and what it expects.

    Version 2 gathers the inputs (``observe``, ``crop_shape``, ``input_size`` at the top level
    in version 1) into :class:`ModelInputs`; version 3 adds the measurement inputs and the
    architecture switches of early prediction (``first_block_norm``, ``measurements``,
    ``pool_stats``), which older cards had fixed. Older cards are converted when read.
    """

    SCHEMA: ClassVar[int] = 3

    format: int = CARD_FORMAT
    medseq_version: str = __version__
    architecture: ModelConfig
    label_names: list[str]
    config_hash: str | None = None
    """Hash of the training configuration that made the model."""
    inputs: ModelInputs = Field(default_factory=ModelInputs)
    """What the model is fed (scans, crop size, channels, features)."""
    preprocess_config: dict[str, Any] = Field(default_factory=dict)
    """The cache's preprocessing settings (free-form: owned by ``medseq.preprocess.config``;
    ``predict`` validates them before preprocessing a new patient the same way)."""
    preprocess_config_hash: str | None = None
    preprocess_fingerprint: dict[str, Any] = Field(default_factory=dict)
    """The cache's fingerprint (target spacing...), so ``predict`` preprocesses on the same grid
    (free-form: the manifest's ``fingerprint``)."""
    train_patients: list[str] = Field(default_factory=list)
    fold: int | None = None
    """The cross-validation fold this model held out; None for the all-patient model."""
    epochs: int | None = None
    label: LabelRecord = Field(default_factory=lambda: LabelRecord())
    """What the model predicts (:data:`LABEL_KINDS`); ``progression``: a risk score."""

    @property
    def label_kind(self) -> str:
        """``label.kind``."""
        return self.label.kind

    @model_validator(mode="after")
    def _channels_fit(self) -> ModelCard:
        if len(self.inputs.channels) != self.architecture.in_channels:
            raise ValueError(f"inputs.channels has {len(self.inputs.channels)} channels, "
                             f"architecture.in_channels {self.architecture.in_channels}")
        if self.architecture.measurements != bool(self.inputs.lesion_measurements):
            raise ValueError("architecture.measurements and inputs.lesion_measurements "
                             "disagree: the model would be fed other inputs than it reads")
        shape = self.inputs.crop_shape
        if shape and shape[0] != len(self.inputs.channels):
            raise ValueError(f"inputs.crop_shape {shape} does not hold "
                             f"{len(self.inputs.channels)} channels")
        return self

    @classmethod
    def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        """An older card in the current shape: version 1's input keys move into ``inputs``;
        before version 3 the encoder normalised its first block and no measurements were fed."""
        version = data.get("schema_version", 1)
        if version < 2 and "inputs" not in data:
            moved = {key: data[key] for key in _V1_INPUT_KEYS if key in data}
            data = {**{k: v for k, v in data.items() if k not in _V1_INPUT_KEYS},
                    "inputs": moved}
        if version < 3 and isinstance(data.get("architecture"), dict):
            data = {**data, "architecture": {**_V2_ARCHITECTURE, **data["architecture"]}}
        return data


_V1_INPUT_KEYS = ("observe", "crop_shape", "input_size")
_V2_ARCHITECTURE = {"first_block_norm": True, "measurements": False, "pool_stats": False}
"""What a version-2 (or older) card's architecture was, in the keys version 3 added."""


def card_path(path: Path) -> Path:
    """``model.json`` of a model directory, or beside a weights file."""
    path = Path(path)
    return path / CARD_NAME if path.is_dir() else path.with_name(CARD_NAME)


def write_card(directory: Path, card: ModelCard) -> Path:
    """Write ``directory/model.json`` atomically."""
    return write_document(Path(directory) / CARD_NAME, card)


def read_card(path: Path) -> ModelCard:
    """Read ``model.json`` from a model directory (or beside the weights file ``path``)."""
    path = card_path(path)
    if not path.is_file():
        raise CacheError(f"no {CARD_NAME} beside the weights", path=path.parent)
    return read_document(path, ModelCard)


# ----------------------------------------------------------------------------- splits.json

class Splits(RunDocument):
    """``splits.json``: who trains, with which label, held out by which fold."""

    seed: int | None = None
    folds_count: int | None = None
    cache: str | None = None
    """Absolute path of the training cache (``report``, ``evaluate`` and ``predict`` find it
    here)."""
    config_hash: str | None = None
    label_source: str = ""
    """``csv:<path>``, ``manifest`` or ``tracking``."""
    label_names: list[str] = Field(default_factory=list)
    excluded_summary: str = ""
    excluded: dict[str, str] = Field(default_factory=dict)
    """Patient id -> why it was left out."""
    labels: dict[str, int] = Field(default_factory=dict)
    folds: dict[str, int] = Field(default_factory=dict)
    """Patient id -> the cross-validation fold that holds it out."""
    label_kind: str = "overall"
    """What the labels mean (:data:`LABEL_KINDS`); runs written before it: ``overall``."""
    observe: int | None = None
    """Scans the models see (the label is about what comes after them)."""
    times: dict[str, float] = Field(default_factory=dict)
    """``progression`` labels: days from the last observed scan to progression or censoring
    (``labels`` then holds the event: 1 progressed, 0 censored)."""
    determined: dict[str, str] = Field(default_factory=dict)
    """Patients left out because the observed scans already decide their label, with why."""


def write_splits(run_dir: Path, splits: Splits) -> Path:
    return write_document(Path(run_dir) / SPLITS_NAME, splits)


def read_splits(run_dir: Path) -> Splits:
    return read_document(Path(run_dir) / SPLITS_NAME, Splits)


# ----------------------------------------------------------------------- predictions.jsonl

LABEL_KINDS: tuple[str, ...] = ("best_after", "landmark", "progression", "overall", "given")
"""What a run's label means (``splits.json``'s ``label_kind``; :mod:`medseq.training.targets`):
``best_after``: best overall RECIST response over the scans after the observed ones;
``landmark``: the RECIST response of the scan nearest a landmark day after the observed ones;
``progression``: time from the last observed scan to progression (PD), censored at the last
scan; ``overall``: best overall response over all scans (manifest or tracking);
``given``: labels a CSV gave (their meaning is the user's)."""


class PredictionLine(RunDocument):
    """One line of ``predictions.jsonl``: the out-of-fold prediction of one patient."""

    patient_id: str
    fold: int | None = None
    label: int | None = None
    """Label index of the task (RECIST class index for the ``recist`` task)."""
    responder: int | None = None
    """1 for CR/PR, 0 otherwise (what evaluation scores); absent: ``label`` is binary."""
    probability: float = Field(ge=0.0, le=1.0)
    """Probability of response."""
    observed: int | None = None
    """Scans the model saw."""
    days: list[int] = Field(default_factory=list)
    burden_ml: list[float | None] = Field(default_factory=list)
    """Observed total lesion burden per scan (mL)."""
    forecast_ml: list[float | None] = Field(default_factory=list)
    """Forecast burden of the NEXT scan, made from each observed state (mL)."""
    probabilities: list[float] | None = None
    """Per-class probabilities (``recist`` task)."""
    risk: float | None = None
    """Progression risk score (``progression`` labels; higher = earlier progression); the
    ``probability`` is then its sigmoid."""
    time_days: float | None = None
    """``progression`` labels: days from the last observed scan to progression or censoring."""
    event: bool | None = None
    """``progression`` labels: True when progression was seen, False when censored."""
    features: dict[str, float] | None = None
    """The classical measurement features of the observed scans
    (:data:`medseq.models.measurements.CLASSICAL_FEATURES`), for the feature baseline."""

    @field_validator("burden_ml", "forecast_ml", mode="after")
    @classmethod
    def _finite(cls, values: list[float | None]) -> list[float | None]:
        return [v if v is None or math.isfinite(v) else None for v in values]


def write_predictions(run_dir: Path, rows: Iterable[PredictionLine]) -> Path:
    """Write ``predictions.jsonl`` atomically (the keys each row was given, version first)."""
    return _write_lines(Path(run_dir) / PREDICTIONS_NAME, rows)


def read_predictions(run_dir: Path) -> list[PredictionLine]:
    """Every line of ``predictions.jsonl``; a patient twice or no line at all is refused."""
    path = Path(run_dir) / PREDICTIONS_NAME
    rows = list(read_lines(path, PredictionLine))
    seen: set[str] = set()
    for number, row in rows:
        if row.patient_id in seen:
            raise CacheError(f"line {number}: patient {row.patient_id} twice", path=path)
        seen.add(row.patient_id)
    if not rows:
        raise CacheError("no predictions", path=path)
    return [row for _, row in rows]


# --------------------------------------------------------------------------- metrics.jsonl

class EpochRow(Record):
    """One epoch of one model's training."""

    fold: str
    """``"0"``, ``"1"``, ... or ``"all"`` (the final model)."""
    epoch: int
    train_loss: float
    lr: float | None = None
    val_loss: float | None = None
    val_auc: float | None = None
    val_response_loss: float | None = None
    """The response objective alone on the validation patients."""
    seconds: float | None = None

    @field_validator("fold", mode="before")
    @classmethod
    def _fold_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class MetricsLine(EpochRow, RunDocument):
    """One line of ``metrics.jsonl``: an :class:`EpochRow` with ``schema_version`` first."""


def write_metrics(run_dir: Path, rows: Iterable[EpochRow]) -> Path:
    """Write ``metrics.jsonl`` (all rows, atomically)."""
    return _write_lines(Path(run_dir) / METRICS_NAME, (_metrics_line(r) for r in rows))


def append_metrics(run_dir: Path, row: EpochRow) -> None:
    """Add one epoch to ``metrics.jsonl`` (as training goes; a kill is repaired on resume)."""
    with open(Path(run_dir) / METRICS_NAME, "a", encoding="utf-8") as handle:
        handle.write(_line(_metrics_line(row)))


def _metrics_line(row: EpochRow) -> MetricsLine:
    return MetricsLine.model_validate({"schema_version": MetricsLine.SCHEMA,
                                       **row.model_dump(exclude_unset=True)})


def read_metrics(run_dir: Path) -> list[EpochRow]:
    path = Path(run_dir) / METRICS_NAME
    return [EpochRow.model_validate(row.model_dump(exclude={"schema_version"}))
            for _, row in read_lines(path, MetricsLine)]


# --------------------------------------------------------------------- folds/K/result.json

class FoldPrediction(Record):
    """A held-out patient's prediction by one fold model."""

    probability: float
    observed: int
    forecast_ml: list[float]
    probabilities: list[float] | None = None
    risk: float | None = None
    features: dict[str, float] | None = None


class FoldResultDocument(RunDocument):
    """``folds/K/result.json``: what training fold K produced (read again by ``--resume``)."""

    fold: str
    best_epoch: int
    epochs_run: int
    history: list[EpochRow] = Field(default_factory=list)
    predictions: dict[str, FoldPrediction] = Field(default_factory=dict)


def fold_dir(run_dir: Path, fold: str | int) -> Path:
    return Path(run_dir) / FOLDS_DIR / str(fold)


def write_fold_result(run_dir: Path, result: FoldResultDocument) -> Path:
    """Write ``folds/K/result.json``: rows and predictions keep exactly the keys they were given,
    so a resumed run rewrites ``metrics.jsonl`` and ``predictions.jsonl`` byte for byte."""
    path = fold_dir(run_dir, result.fold) / FOLD_RESULT_NAME
    result.schema_version = FoldResultDocument.SCHEMA
    write_text_atomic(path, result.model_dump_json(indent=2, exclude_unset=True) + "\n")
    return path


def read_fold_result(run_dir: Path, fold: str | int) -> FoldResultDocument:
    return read_document(fold_dir(run_dir, fold) / FOLD_RESULT_NAME, FoldResultDocument)


# --------------------------------------------------------------------------------- helpers

def _line(row: RunDocument) -> str:
    """One JSON line (``json.dumps`` spacing): ``schema_version``, then the fields given."""
    row.schema_version = type(row).SCHEMA
    return json.dumps(row.model_dump(mode="json", exclude_unset=True)) + "\n"


def _write_lines(path: Path, rows: Iterable[RunDocument]) -> Path:
    write_text_atomic(path, "".join(_line(row) for row in rows))
    return path
