"""Save and load models as ``model.safetensors`` + ``model.json``; never pickles.

``torch.load`` unpickles arbitrary code, so it is never used on a path a user hands us. The
weights are a flat safetensors file; everything needed to rebuild the network and to feed it
what training saw (architecture, preprocessing settings and their hash, label names, how many
scans it observes) is plain JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medseq import __version__
from medseq.config import first_validation_error
from medseq.errors import CacheError
from medseq.io.atomic import atomic_path, write_text_atomic
from medseq.models.config import ModelConfig

WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "model.json"
CARD_FORMAT = 1


class ModelCard(BaseModel):
    """``model.json``: what a saved model is and what it expects."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = 1
    """Version of this document; files from before versioning have none (read as 1)."""
    format: int = CARD_FORMAT
    medseq_version: str = __version__
    architecture: ModelConfig
    label_names: list[str]
    observe: int | None = None
    """Scans the model sees per patient (the first k); None for all."""
    crop_shape: list[int] | None = None
    """[2, S, S, S] of one lesion crop, as cached."""
    input_size: int | None = None
    """Crops are resized to this edge length before the encoder (None: used as cached)."""
    preprocess_config: dict[str, Any] = Field(default_factory=dict)
    preprocess_config_hash: str | None = None
    preprocess_fingerprint: dict[str, Any] = Field(default_factory=dict)
    """The cache's fingerprint (target spacing...), so ``predict`` preprocesses on the same grid."""
    train_patients: list[str] = Field(default_factory=list)
    fold: int | None = None
    """The cross-validation fold this model held out; None for the all-patient model."""
    epochs: int | None = None


def save_model(directory: Path, state: dict[str, Any], card: ModelCard) -> None:
    """Write ``directory/model.safetensors`` and ``directory/model.json`` atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: value.detach().cpu().contiguous() for name, value in state.items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "medseq": __version__})
    write_text_atomic(directory / CARD_NAME, card.model_dump_json(indent=2) + "\n")


def read_card(path: Path) -> ModelCard:
    """Read ``model.json`` from a model directory (or the file itself)."""
    path = Path(path)
    card_path = path / CARD_NAME if path.is_dir() else path.with_name(CARD_NAME)
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CacheError("no model.json beside the weights", path=card_path.parent) from None
    except (OSError, ValueError) as err:
        raise CacheError(f"unreadable model.json ({err})", path=card_path) from None
    try:
        return ModelCard.model_validate(data)
    except ValidationError as err:
        where, message = first_validation_error(err)
        raise CacheError(f"invalid model.json at {where}: {message}", path=card_path) from None


def read_weights(path: Path) -> dict[str, Any]:
    """The tensors of ``model.safetensors`` (a model directory or the file itself)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    if not weights.is_file():
        raise CacheError("no model.safetensors (is this a medseq run or model directory?)",
                         path=weights.parent)
    try:
        return dict(load_file(str(weights)))
    except (SafetensorError, OSError) as err:
        raise CacheError(f"unreadable weights ({err})", path=weights) from None
