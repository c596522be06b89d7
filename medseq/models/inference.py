"""Load a saved model and predict one patient; the API ``predict`` and ``evaluate`` call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseq.contracts.run import ModelCard, read_card
from medseq.errors import CacheError
from medseq.models.inputs import prepare_inputs
from medseq.models.io import read_weights
from medseq.models.sequence import ResponseModel


@dataclass(frozen=True)
class LoadedModel:
    """A saved model: the network (eval mode, CPU) and its card (what it is fed)."""

    module: ResponseModel
    card: ModelCard


def load_model(path: Path) -> LoadedModel:
    """Rebuild a model from a directory holding ``model.safetensors`` + ``model.json``.

    Accepts the directory or the ``.safetensors`` file.
    """
    card = read_card(path)
    model = build_model(card)
    state = read_weights(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CacheError(
            f"weights do not fit the architecture in model.json ({str(err).splitlines()[0]})",
            path=path,
        ) from None
    model.eval()
    return LoadedModel(module=model, card=card)


def build_model(card: ModelCard) -> ResponseModel:
    """An untrained model with the card's architecture."""
    return ResponseModel(card.architecture)


@torch.no_grad()
def predict_patient(model: LoadedModel, crops: np.ndarray, days: list[int], *,
                    burden_ml: list[float | None] | None = None,
                    new_lesions: list[bool] | None = None) -> dict[str, Any]:
    """Predict one patient from its crops and scan days, fed as the model card says.

    Args:
        model: from :func:`load_model`.
        crops: [T, L, 2, S, S, S] (float16 or float32), the cache's ``crops.npy``.
        days: days from baseline of the T timepoints.
        burden_ml: whole-mask lesion volume per timepoint (the cache's ``lesion_volume_ml``).
        new_lesions: per timepoint, whether tracking found a new lesion.

    Returns:
        ``probability`` (of response: CR or PR), ``probabilities`` (per class, RECIST task
        only), ``observed`` (scans used) and ``forecast_ml`` (predicted total lesion volume of
        the next timepoint, from each observed state).
    """
    prepared = prepare_inputs(model.card.inputs, crops, days, burden_ml=burden_ml,
                              new_lesions=new_lesions)
    t = prepared.observed
    module = model.module
    was_training = module.training
    module.eval()
    out = module(
        prepared.crops.unsqueeze(0),
        torch.ones(1, crops.shape[1], dtype=torch.bool),
        torch.tensor([t]),
        prepared.days.unsqueeze(0),
        prepared.days_since_previous.unsqueeze(0),
        prepared.lesion_features.unsqueeze(0),
        prepared.scan_features.unsqueeze(0),
    )
    module.train(was_training)
    result: dict[str, Any] = {
        "observed": t,
        "forecast_ml": [float(v) for v in torch.expm1(out.forecast[0]).clamp_min(0.0)],
    }
    if prepared.classical is not None:
        result["features"] = prepared.classical
    if model.card.label_kind == "progression":
        result["risk"] = float(out.logits[0, 0])
    if module.config.task == "binary":
        result["probability"] = float(torch.sigmoid(out.logits[0, 0]))
    else:
        probs = torch.softmax(out.logits[0].float(), dim=0)
        result["probabilities"] = [float(p) for p in probs]
        result["probability"] = float(probs[0] + probs[1])
    return result
