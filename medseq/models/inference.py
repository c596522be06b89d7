"""Load a saved model and predict one patient; the API ``predict`` and ``evaluate`` call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseq.contracts.run import ModelCard, ModelConfig, read_card
from medseq.errors import CacheError, InputDataError
from medseq.models.io import read_weights
from medseq.models.sequence import ResponseModel, resize_crops


def load_model(path: Path) -> tuple[ResponseModel, ModelConfig]:
    """Rebuild a model from a directory holding ``model.safetensors`` + ``model.json``.

    Accepts the directory or the ``.safetensors`` file. The model is in eval mode on the CPU,
    with ``model.observe`` and ``model.card`` (the :class:`ModelCard`) attached.
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
    return model, card.architecture


def build_model(card: ModelCard) -> ResponseModel:
    """An untrained model with the card's architecture and observe setting."""
    model = ResponseModel(card.architecture)
    model.observe = card.observe
    model.input_size = card.input_size
    model.card = card
    return model


@torch.no_grad()
def predict_patient(
    model: ResponseModel, crops: np.ndarray, days: list[int], *, observe: int | None = None
) -> dict[str, Any]:
    """Predict one patient from its crops and scan days.

    Args:
        model: from :func:`load_model`.
        crops: [T, L, 2, S, S, S] (float16 or float32), the cache's ``crops.npy``.
        days: days from baseline of the T timepoints.
        observe: use only the first k scans; defaults to what the model was trained on.

    Returns:
        ``probability`` (of response: CR or PR), ``probabilities`` (per class, RECIST task
        only), ``observed`` (scans used) and ``forecast_ml`` (predicted total lesion volume of
        the next timepoint, from each observed state).
    """
    if crops.ndim != 6 or crops.shape[0] != len(days) or crops.shape[0] < 1:
        raise InputDataError(
            f"crops must be [T, L, C, S, S, S] with T = len(days) = {len(days)}, "
            f"got shape {list(crops.shape)}"
        )
    k = observe if observe is not None else model.observe
    t = min(len(days), k) if k else len(days)
    x = torch.from_numpy(np.ascontiguousarray(crops[:t], dtype=np.float32))
    x = resize_crops(x, model.input_size).unsqueeze(0)
    day_list = [float(d) for d in days[:t]]
    previous = [0.0] + [day_list[i] - day_list[i - 1] for i in range(1, t)]
    was_training = model.training
    model.eval()
    out = model(
        x,
        torch.ones(1, crops.shape[1], dtype=torch.bool),
        torch.tensor([t]),
        torch.tensor([day_list]),
        torch.tensor([previous]),
    )
    model.train(was_training)
    result: dict[str, Any] = {
        "observed": t,
        "forecast_ml": [float(v) for v in torch.expm1(out.forecast[0]).clamp_min(0.0)],
    }
    if model.config.task == "binary":
        result["probability"] = float(torch.sigmoid(out.logits[0, 0]))
    else:
        probs = torch.softmax(out.logits[0].float(), dim=0)
        result["probabilities"] = [float(p) for p in probs]
        result["probability"] = float(probs[0] + probs[1])
    return result
